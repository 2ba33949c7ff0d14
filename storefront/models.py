"""What the merchant sets in admin to make the shop theirs: name, logo, colour, announcement, footer pages."""

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from catalog.models import public_storage

COLOUR = RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Write the colour as #rrggbb, for example #0b5cad."))


def _in_chinese() -> bool:
    return (get_language() or "").lower().startswith("zh")


DEFAULT_SHOP_NAME = "Digital Goods Shop"


class ShopSettings(models.Model):
    """The shop's brand. One row (pk 1); read through storefront.branding, which caches it."""

    name = models.CharField(_("shop name"), max_length=80, default=DEFAULT_SHOP_NAME)
    name_zh_hans = models.CharField(_("shop name (Simplified Chinese)"), max_length=80, blank=True)
    tagline = models.CharField(
        _("tagline"), max_length=200, blank=True, help_text=_("Also the search engines' description.")
    )
    tagline_zh_hans = models.CharField(_("tagline (Simplified Chinese)"), max_length=200, blank=True)
    logo = models.ImageField(_("logo"), storage=public_storage, upload_to="brand/", blank=True)
    logo_webp = models.ImageField(storage=public_storage, upload_to="brand/", blank=True, editable=False)
    logo_width = models.PositiveIntegerField(default=0, editable=False)
    logo_height = models.PositiveIntegerField(default=0, editable=False)
    primary_colour = models.CharField(_("primary colour"), max_length=7, default="#0b5cad", validators=[COLOUR])
    announcement = models.CharField(_("announcement banner"), max_length=300, blank=True)
    announcement_zh_hans = models.CharField(_("announcement (Simplified Chinese)"), max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("shop settings")
        verbose_name_plural = _("shop settings")

    def __str__(self) -> str:
        return self.name

    @property
    def localized_name(self) -> str:
        if self.name == DEFAULT_SHOP_NAME and not self.name_zh_hans:  # a shop not named yet: in the reader's language
            return gettext("Digital Goods Shop")
        return (self.name_zh_hans if _in_chinese() else "") or self.name

    @property
    def localized_tagline(self) -> str:
        return (self.tagline_zh_hans if _in_chinese() else "") or self.tagline

    @property
    def localized_announcement(self) -> str:
        return (self.announcement_zh_hans if _in_chinese() else "") or self.announcement


class ShopPage(models.Model):
    """A page linked from every page's footer, written as Markdown (sanitised when shown)."""

    slug = models.SlugField(_("address"), unique=True, help_text=_("The page lives at /pages/<address>/."))
    title = models.CharField(_("title"), max_length=100)
    title_zh_hans = models.CharField(_("title (Simplified Chinese)"), max_length=100, blank=True)
    body = models.TextField(_("text (Markdown)"))
    body_zh_hans = models.TextField(_("text in Simplified Chinese (Markdown)"), blank=True)
    position = models.PositiveSmallIntegerField(_("position in the footer"), default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "title"]
        verbose_name = _("footer page")
        verbose_name_plural = _("footer pages")

    def __str__(self) -> str:
        return self.title

    @property
    def localized_title(self) -> str:
        return (self.title_zh_hans if _in_chinese() else "") or self.title

    @property
    def localized_body(self) -> str:
        return (self.body_zh_hans if _in_chinese() else "") or self.body
