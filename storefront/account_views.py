"""The shopper's optional account: sign in by an emailed link or a password, see every order and subscription of the
address, set a password, download one's data as JSON, ask for it to be erased. Thin: storefront.accounts and
storefront.privacy do the work. Every page answers `Cache-Control: no-store`."""

import json
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from storefront.accounts import (
    SignInLinkInvalid,
    account_orders,
    account_subscriptions,
    is_shopper,
    password_sign_in,
    sign_in_link_redeem,
    signed_in_email,
)
from storefront.privacy import privacy_erase, privacy_export
from storefront.ratelimit import client_rate_limited
from storefront.tasks import send_sign_in_link

BACKEND = "django.contrib.auth.backends.ModelBackend"
ORDERS_PER_PAGE = 20


class SignInLinkForm(forms.Form):
    email = forms.EmailField(
        label=gettext_lazy("Email address"),
        help_text=gettext_lazy("We email you a link that signs you in. No password needed."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )


class PasswordSignInForm(forms.Form):
    email = forms.EmailField(
        label=gettext_lazy("Email address"), widget=forms.EmailInput(attrs={"autocomplete": "username"})
    )
    password = forms.CharField(
        label=gettext_lazy("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class EraseForm(forms.Form):
    confirm = forms.BooleanField(label=gettext_lazy("I understand that my account and personal data will be erased."))


def _private(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def shopper_required(view):
    """Only a signed-in shopper; anyone else is sent to the sign-in page (staff too: their admin login is not an
    account here)."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not is_shopper(request.user):
            return redirect("account-sign-in")
        return _private(view(request, *args, **kwargs))

    return wrapped


def _sign_in(request, user) -> None:
    login(request, user, backend=BACKEND)  # a new session key: nothing a visitor planted before survives


@require_http_methods(["GET", "POST"])
def account_sign_in(request):
    """Ask for a link (the answer never says whether the address has orders or an account), or use a password.
    Both count against one rate limit per client IP, like "find my order"."""
    if is_shopper(request.user):
        return redirect("account")
    posted = request.POST if request.method == "POST" else None
    action = request.POST.get("action", "link")
    link_form = SignInLinkForm(posted if action == "link" else None, prefix="link")
    password_form = PasswordSignInForm(posted if action == "password" else None, prefix="password")
    context = {"link_form": link_form, "password_form": password_form, "sent": False, "limited": False}
    status = 200
    if request.method == "POST":
        form = link_form if action == "link" else password_form
        if form.is_valid():
            if client_rate_limited(request, scope="account", limit=settings.ACCOUNT_SIGN_IN_RATE):
                context["limited"], status = True, 429
            elif action == "link":
                send_sign_in_link.delay(form.cleaned_data["email"], get_language() or settings.LANGUAGE_CODE)
                context["sent"] = True
            else:
                user = password_sign_in(email=form.cleaned_data["email"], password=form.cleaned_data["password"])
                if user is not None:
                    _sign_in(request, user)
                    return redirect("account")
                form.add_error(None, _("That email address and password do not match an account."))
    return _private(render(request, "storefront/account/sign_in.html", context, status=status))


@require_http_methods(["GET", "POST"])
def account_link(request):
    """The emailed link's page. The token is in the fragment, which only the page's script reads and posts (or the
    shopper pastes it): a GET spends nothing, so mail scanners that open links cannot use it up."""
    if request.method == "POST":
        try:
            user = sign_in_link_redeem(token=request.POST.get("token", "").strip())
        except SignInLinkInvalid:
            context = {"invalid": True}
            return _private(render(request, "storefront/account/link.html", context, status=400))
        _sign_in(request, user)
        messages.success(request, _("You are signed in."))
        return redirect("account")
    return _private(render(request, "storefront/account/link.html", {"invalid": False}))


@require_POST
def account_sign_out(request):
    logout(request)
    messages.success(request, _("You are signed out."))
    return redirect("product-list")


@require_GET
@shopper_required
def account_home(request):
    email = signed_in_email(request)
    page = Paginator(account_orders(email=email), ORDERS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "email": email,
        "orders": page,
        "subscriptions": account_subscriptions(email=email),
        "has_password": request.user.has_usable_password(),
    }
    return render(request, "storefront/account/home.html", context)


@require_http_methods(["GET", "POST"])
@shopper_required
def account_password(request):
    """Set a password (the first time: the link was the proof) or change it (the current one is asked)."""
    user = request.user
    form_class = PasswordChangeForm if user.has_usable_password() else SetPasswordForm
    form = form_class(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        update_session_auth_hash(request, user)  # this session stays signed in, the others are signed out
        messages.success(request, _("Your password is saved. You can sign in with it or with an emailed link."))
        return redirect("account")
    return render(request, "storefront/account/password.html", {"form": form})


@require_GET
@shopper_required
def account_data(request):
    """Everything the shop keeps about the address, as a JSON download."""
    data = privacy_export(email=signed_in_email(request), user=request.user)
    response = HttpResponse(
        json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="my-data-{timezone.now():%Y-%m-%d}.json"'
    return response


@require_http_methods(["GET", "POST"])
@shopper_required
def account_erase(request):
    """Ask for the account and personal data to be erased (confirmed with a tick); signs the shopper out."""
    form = EraseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        outcome = privacy_erase(email=signed_in_email(request), user=request.user, actor="shopper")
        logout(request)
        context = {"outcome": outcome, "window_days": settings.PRIVACY_DISPUTE_WINDOW_DAYS}
        return render(request, "storefront/account/erased.html", context)
    context = {
        "form": form,
        "window_days": settings.PRIVACY_DISPUTE_WINDOW_DAYS,
        "network_days": settings.PRIVACY_NETWORK_DATA_DAYS,
    }
    return render(request, "storefront/account/erase.html", context)
