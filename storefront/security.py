"""Content-Security-Policy with a per-request nonce, and the rate limit on the two login pages.

Django 5.2 has no CSP of its own. Every response gets a strict policy: scripts and <style> blocks only
from our origin or carrying this request's nonce (templates write `nonce="{{ request.csp_nonce }}"`),
no inline event handlers or style attributes, no framing of our pages, forms posting only to us.
Two pages need more, and only they get it:
- the pay page loads Stripe.js, which frames and calls Stripe (or localstripe in the demo and tests);
- the Django admin: one admin page of ours (catalog/admin.py's key-import progress) has a style attribute.
"""

import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpResponse

from payments.models import PaymentChannel, Provider
from payments.selectors import stripe_js_url
from storefront.ratelimit import RATE_LIMITED_MESSAGE, client_rate_limited, retry_after_seconds

CSP_HEADER = "Content-Security-Policy"
REAL_STRIPE_JS_ORIGIN = "https://js.stripe.com"
# What Stripe.js needs from Stripe itself (docs.stripe.com/security/guide, "Content Security Policy").
REAL_STRIPE_SOURCES = {
    "script-src": ["https://js.stripe.com", "https://*.js.stripe.com"],
    "frame-src": ["https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com"],
    "connect-src": ["https://api.stripe.com"],
}
STRIPE_JS_VIEWS = {"pay", "subscription-manage"}  # URL names of the pages that load Stripe.js
LOGIN_VIEWS = {"admin:login", "review:login", "twofactor:verify", "twofactor:setup"}  # POSTs counted against LOGIN_RATE


def base_policy(nonce: str) -> dict[str, list[str]]:
    return {
        "default-src": ["'self'"],
        "script-src": ["'self'", f"'nonce-{nonce}'"],
        "style-src": ["'self'", f"'nonce-{nonce}'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        # the PayPal button is a link, not a form, and every form of ours redirects within the site
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def stripe_sources() -> dict[str, list[str]]:
    """The origins the Stripe channels' Stripe.js needs: Stripe's own, or a localstripe's (demo, tests).

    localstripe's stand-in for Stripe.js draws plain inputs and calls its own server: no frames.
    """

    sources: dict[str, list[str]] = {}
    for channel in PaymentChannel.objects.filter(provider=Provider.STRIPE):
        origin = _origin(stripe_js_url(channel))
        extra = (
            REAL_STRIPE_SOURCES
            if origin == REAL_STRIPE_JS_ORIGIN
            else {"script-src": [origin], "connect-src": [origin]}
        )
        for directive, values in extra.items():
            sources.setdefault(directive, [])
            sources[directive] += [value for value in values if value not in sources[directive]]
    return sources


def policy_for(request, nonce: str) -> dict[str, list[str]]:
    """The policy of this request's page (its URL was resolved by the time the response comes back)."""
    policy = base_policy(nonce)
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name in STRIPE_JS_VIEWS:
        for directive, values in stripe_sources().items():
            policy[directive] = policy.get(directive, ["'self'"]) + values
    if match is not None and "admin" in match.app_names:
        policy["style-src-attr"] = ["'unsafe-inline'"]  # style attributes only, never <style> or scripts
    if settings.CSP_REPORT_URI:
        policy["report-uri"] = [settings.CSP_REPORT_URI]
    return policy


def policy_header(policy: dict[str, list[str]]) -> str:
    return "; ".join(f"{directive} {' '.join(values)}" for directive, values in policy.items())


class ContentSecurityPolicyMiddleware:
    """Gives each request a fresh nonce (request.csp_nonce) and each response the policy that uses it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = nonce = secrets.token_urlsafe(18)
        response = self.get_response(request)
        if CSP_HEADER not in response:  # a view that set its own policy keeps it
            response[CSP_HEADER] = policy_header(policy_for(request, nonce))
        return response


class LoginRateLimitMiddleware:
    """Login attempts (POSTs to the admin login and the review queue login) per client IP and hour.

    A middleware rather than a change in each login view: both are Django's own LoginView.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if request.method != "POST" or match is None or match.view_name not in LOGIN_VIEWS:
            return None
        if not client_rate_limited(request, scope="login", limit=settings.LOGIN_RATE):
            return None
        response = HttpResponse(str(RATE_LIMITED_MESSAGE), status=429, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(retry_after_seconds())
        return response
