"""Merchant admin for products, with the key tools: import keys, set a shared key, export unsold keys.

The key tools are plain admin views (ProductAdmin.get_urls) that call the services in
fulfillment.imports; their pages are small templates kept here, extending the admin's own.
"""

from functools import cache

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template import engines
from django.template.backends.django import Template
from django.template.response import TemplateResponse
from django.urls import path, reverse

from catalog.images import ImageRejected
from catalog.models import Category, FulfilmentKind, Product, ProductImage
from catalog.services import product_image_prepare
from fulfillment.imports import KeyImportRejected, key_import_create, storage_rejection
from fulfillment.keys import MAX_KEY_LENGTH, SharedKeyRejected
from fulfillment.models import ImportStatus, KeyImport, KeyStatus, LicenseKey
from storefront.admin.catalog_forms import PriceBreakInline, ProductForm, ProductImageInline
from storefront.admin.licenses import LicensePolicyInline
from storefront.admin.staff import start_job
from storefront.branding import ForgetsBranding
from storefront.flow.stock import shared_key_set
from storefront.models import StaffJobKind
from storefront.templatetags.money import money
from storefront.uploads import upload_error

IMPORT_PERMISSION = "fulfillment.add_licensekey"
EXPORT_PERMISSION = "fulfillment.export_keys"

DELIMITER_CHOICES = [
    ("line", "None: one key per line"),
    ("comma", "Comma (,)"),
    ("semicolon", "Semicolon (;)"),
    ("tab", "Tab"),
    ("pipe", "Pipe (|)"),
]
DELIMITERS = {"line": "", "comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}


def _key_count(status: str) -> Coalesce:
    """Keys of the product in one status, as a correlated subquery (evaluated only for the listed rows)."""
    counted = (
        LicenseKey.objects.filter(product=OuterRef("pk"), status=status)
        .order_by()
        .values("product")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


# Pages --------------------------------------------------------------------------------------------------

_PAGE = """{% extends "admin/base_site.html" %}
{% block extrahead %}{{ block.super }}{% if refresh %}<meta http-equiv="refresh" content="2">{% endif %}{% endblock %}
{% block breadcrumbs %}<div class="breadcrumbs"><a href="{% url 'admin:index' %}">Home</a>
&rsaquo; <a href="{% url 'admin:catalog_product_changelist' %}">Products</a>
&rsaquo; <a href="{% url 'admin:catalog_product_change' product.pk %}">{{ product }}</a>
&rsaquo; {{ title }}</div>{% endblock %}
{% block content %}<div id="content-main">[BODY]</div>{% endblock %}
"""

_FORM = """{% if intro %}<p>{{ intro }}</p>{% endif %}
<form method="post" enctype="multipart/form-data">{% csrf_token %}
{% if form.non_field_errors %}<p class="errornote">
{% for error in form.non_field_errors %}{{ error }} {% endfor %}</p>{% endif %}
<fieldset class="module aligned">{% for field in form %}<div class="form-row">{{ field.errors }}
<div class="flex-container">{{ field.label_tag }} {{ field }}</div>
{% if field.help_text %}<div class="help">{{ field.help_text }}</div>{% endif %}</div>{% endfor %}</fieldset>
<div class="submit-row"><input type="submit" class="default" value="{{ submit }}"></div>
</form>
{% if imports %}<h2>Recent imports</h2><ul>{% for i in imports %}
<li><a href="{% url 'admin:catalog_product_key_import' i.pk %}">#{{ i.pk }}</a> {{ i.created_at|date:"Y-m-d H:i" }}
by {{ i.created_by }}: {{ i.get_status_display }}, {{ i.added }} added</li>{% endfor %}</ul>{% endif %}"""

_PROGRESS = """<p id="import-status">Import #{{ key_import.pk }}: <strong>{{ key_import.get_status_display }}</strong>,
{{ key_import.percent }}% ({{ key_import.processed_lines }} of {{ key_import.total_lines }} lines)</p>
<progress max="100" value="{{ key_import.percent }}" style="width: 30em">{{ key_import.percent }}%</progress>
{% if key_import.error %}<p class="errornote">{{ key_import.error }}</p>{% endif %}
<table id="import-report"><tbody>
<tr><th>Added to stock</th><td>{{ key_import.added }}</td></tr>
<tr><th>Duplicates in the file</th><td>{{ key_import.duplicates_in_file }}</td></tr>
<tr><th>Duplicates already in stock</th><td>{{ key_import.duplicates_existing }}</td></tr>
<tr><th>Blank lines</th><td>{{ key_import.blank }}</td></tr>
<tr><th>Too long (over {{ max_length }} characters)</th><td>{{ key_import.too_long }}</td></tr>
</tbody></table>
{% if refresh %}<p>This page refreshes itself until the import is done.</p>{% endif %}
<p><a href="{% url 'admin:catalog_product_change' product.pk %}">Back to {{ product }}</a>
{% if not refresh %} &middot; <a href="{% url 'admin:catalog_product_import_keys' product.pk %}">Import more keys</a>
{% endif %}</p>"""

_EXPORT = """<p>{{ count }} unsold key{{ count|pluralize }} of {{ product }} will be exported
<strong>in clear</strong> as a CSV file, prepared in the background and downloaded once from the job's page.
The export is recorded against every key, with your name.</p>
<form method="post">{% csrf_token %}<div class="submit-row">
<input type="submit" class="default" value="Export {{ count }} key{{ count|pluralize }}"></div></form>"""

_CHANGE_FORM = """{% extends "admin/change_form.html" %}
{% block object-tools-items %}{% if original and original.kind == "license_key" %}
{% if perms.fulfillment.add_licensekey %}{% if original.shared_key_ciphertext is None %}
<li><a href="{% url 'admin:catalog_product_import_keys' original.pk %}">Import keys</a></li>{% endif %}
<li><a href="{% url 'admin:catalog_product_shared_key' original.pk %}">Set shared key</a></li>{% endif %}
{% if perms.fulfillment.export_keys and original.shared_key_ciphertext is None %}
<li><a href="{% url 'admin:catalog_product_export_keys' original.pk %}">Export unsold keys</a></li>{% endif %}
<li><a href="{% url 'admin:fulfillment_licensekey_changelist' %}?product__id__exact={{ original.pk }}">Keys</a></li>
{% endif %}{{ block.super }}{% endblock %}"""


@cache
def _template(body: str) -> Template:
    source = body if body.startswith("{% extends") else _PAGE.replace("[BODY]", body)
    return engines["django"].from_string(source)


# Forms ---------------------------------------------------------------------------------------------------


class KeyImportForm(forms.Form):
    file = forms.FileField(required=False, help_text="A .txt or .csv file, UTF-8.")
    text = forms.CharField(
        label="Or paste keys",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "cols": 60, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Up to about 2 MB; upload a file for more.",
    )
    delimiter = forms.ChoiceField(
        label="Column separator",
        choices=DELIMITER_CHOICES,
        initial="line",
        help_text="With a separator, the first column is the key and the second an optional note.",
    )

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("file")) == bool(cleaned.get("text", "").strip()):
            raise forms.ValidationError("Choose a file or paste keys, one of the two.")
        return cleaned


class SharedKeyForm(forms.Form):
    secret = forms.CharField(
        label="Shared key",
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Sold to every buyer of this product. Stored encrypted; it is never shown here again.",
    )


# Admin -----------------------------------------------------------------------------------------------------


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    inlines = [ProductImageInline, PriceBreakInline, LicensePolicyInline]
    list_display = (
        "name",
        "kind",
        "price",
        "category",
        "featured",
        "is_active",
        "stock",
        "reserved",
        "sold",
        "low_stock",
    )
    list_filter = ("kind", "is_active", "category", "featured", "currency")
    search_fields = ("name", "name_zh_hans", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_fields(self, request, obj=None):
        fields = [name for name in super().get_fields(request, obj) if name != "price"]
        fields.insert(fields.index("currency"), "price")
        return fields

    @admin.display(description="price", ordering="price_amount")
    def price(self, obj):
        return money(obj.price_amount, obj.currency)

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is not ProductImage:
            return
        for image_form in formset.forms:
            image = image_form.instance
            if image.pk and "original" in image_form.changed_data:
                try:
                    product_image_prepare(image=image)
                except ImageRejected:
                    messages.error(request, f"{image.original.name} is not a picture the shop can read.")

    @property
    def change_form_template(self):  # type: ignore[override]
        return _template(_CHANGE_FORM)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("license_policy")  # generated keys: no pool (Product.keys_unlimited)
            .annotate(
                stock_count=_key_count(KeyStatus.AVAILABLE),
                reserved_count=_key_count(KeyStatus.RESERVED),
                sold_count=_key_count(KeyStatus.SOLD),
            )
        )

    @staticmethod
    def _has_pool(obj: Product) -> bool:
        return obj.kind == FulfilmentKind.LICENSE_KEY and not obj.keys_unlimited

    @admin.display(description="stock", ordering="stock_count")
    def stock(self, obj):
        if obj.kind != FulfilmentKind.LICENSE_KEY:
            return "-"
        if self._has_pool(obj):
            return obj.stock_count
        return "shared key" if obj.is_reusable_key else "generated"

    @admin.display(description="reserved", ordering="reserved_count")
    def reserved(self, obj):
        return obj.reserved_count if self._has_pool(obj) else "-"

    @admin.display(description="sold", ordering="sold_count")
    def sold(self, obj):
        return obj.sold_count if self._has_pool(obj) else "-"

    @admin.display(description="low stock", boolean=True)
    def low_stock(self, obj):
        return self._has_pool(obj) and obj.stock_count <= obj.low_stock_threshold

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:product_id>/import-keys/", wrap(self.import_keys_view), name="catalog_product_import_keys"),
            path("key-imports/<int:import_id>/", wrap(self.key_import_view), name="catalog_product_key_import"),
            path("<int:product_id>/shared-key/", wrap(self.shared_key_view), name="catalog_product_shared_key"),
            path("<int:product_id>/export-keys/", wrap(self.export_keys_view), name="catalog_product_export_keys"),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, body: str, product: Product, title: str, **context) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "product": product,
            "title": title,
            **context,
        }
        return TemplateResponse(request, _template(body), context)

    @staticmethod
    def _require(request: HttpRequest, permission: str) -> None:
        if not request.user.has_perm(permission):
            raise PermissionDenied

    def import_keys_view(self, request: HttpRequest, product_id: int) -> HttpResponse:
        self._require(request, IMPORT_PERMISSION)
        product = get_object_or_404(Product, pk=product_id)
        form = KeyImportForm(request.POST or None, request.FILES or None)
        spooling_failed = upload_error(request)
        if spooling_failed is not None:  # the upload met a full disk before it reached us
            form.is_valid()
            form.add_error(None, storage_rejection(spooling_failed).message)
        elif request.method == "POST" and form.is_valid():
            try:
                key_import = key_import_create(
                    product=product,
                    upload=form.cleaned_data["file"] or None,
                    text=None if form.cleaned_data["file"] else form.cleaned_data["text"],
                    delimiter=DELIMITERS[form.cleaned_data["delimiter"]],
                    actor=_actor(request),
                )
            except KeyImportRejected as exc:
                form.add_error(None, exc.message)
            else:
                return HttpResponseRedirect(reverse("admin:catalog_product_key_import", args=[key_import.pk]))
        return self._page(
            request,
            _FORM,
            product,
            f"Import keys into {product}",
            form=form,
            submit="Import keys",
            intro="Keys already in stock and repeated lines are skipped and counted; nothing is replaced.",
            imports=product.key_imports.all()[:5],
        )

    def key_import_view(self, request: HttpRequest, import_id: int) -> HttpResponse:
        self._require(request, IMPORT_PERMISSION)
        key_import = get_object_or_404(KeyImport.objects.select_related("product"), pk=import_id)
        running = key_import.status in (ImportStatus.PENDING, ImportStatus.RUNNING)
        return self._page(
            request,
            _PROGRESS,
            key_import.product,
            f"Key import #{key_import.pk}",
            key_import=key_import,
            refresh=running,
            max_length=MAX_KEY_LENGTH,
        )

    def shared_key_view(self, request: HttpRequest, product_id: int) -> HttpResponse:
        self._require(request, IMPORT_PERMISSION)
        product = get_object_or_404(Product, pk=product_id)
        form = SharedKeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                shared_key_set(product=product, secret=form.cleaned_data["secret"], actor=_actor(request))
            except SharedKeyRejected as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"The shared key of {product} was saved.")
                return HttpResponseRedirect(reverse("admin:catalog_product_change", args=[product.pk]))
        state = "A shared key is set; saving replaces it." if product.is_reusable_key else "No shared key is set."
        return self._page(
            request, _FORM, product, f"Shared key of {product}", form=form, submit="Save shared key", intro=state
        )

    def export_keys_view(self, request: HttpRequest, product_id: int) -> HttpResponse:
        """Confirm, then export as a staff job: the keys are decrypted by a task into a file for one download."""
        self._require(request, EXPORT_PERMISSION)
        product = get_object_or_404(Product, pk=product_id)
        if request.method != "POST":
            count = LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count()
            return self._page(request, _EXPORT, product, f"Export unsold keys of {product}", count=count)
        job = start_job(request, kind=StaffJobKind.EXPORT_KEYS, params={"product": product.pk, "slug": product.slug})
        return HttpResponseRedirect(reverse("admin:storefront_staffjob_progress", args=[job.pk]))


@admin.register(Category)
class CategoryAdmin(ForgetsBranding, admin.ModelAdmin):
    """Shelves of the shop; `position` orders them in the menu and on the home page."""

    list_display = ("name", "name_zh_hans", "slug", "position")
    list_editable = ("position",)
    prepopulated_fields = {"slug": ("name",)}
    search_fields = ("name", "name_zh_hans")
