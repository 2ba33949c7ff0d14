"""The shop's brand, categories and footer pages as every page reads them: from the cache, one query per change.

Admin forgets the cached copy when a merchant saves (storefront.admin), so a change shows on the next page;
the copy also expires by itself after BRANDING_SECONDS, in case a change came from elsewhere (a shell, another
process with its own memory cache in the demo). With the cache away (Redis down) it is read from the database.
"""

import re
from dataclasses import dataclass

from django.core.cache import cache

from catalog.images import webp_variant
from catalog.models import Category
from storefront.models import ShopPage, ShopSettings
from storefront.outages import cache_guarded

CACHE_KEY = "shop:branding:v1"
BRANDING_SECONDS = 300


@dataclass(frozen=True)
class Branding:
    settings: ShopSettings
    categories: tuple[Category, ...]
    pages: tuple[ShopPage, ...]


def _load() -> Branding:
    settings = ShopSettings.objects.filter(pk=1).first() or ShopSettings(pk=1)
    return Branding(
        settings=settings,
        categories=tuple(Category.objects.all()),
        pages=tuple(ShopPage.objects.all()),
    )


def branding_get() -> Branding:
    """What the header, footer and home page show: the shop settings, categories in order, footer pages."""
    cached = cache_guarded(lambda: cache.get(CACHE_KEY), doing="reading the branding")
    if isinstance(cached, Branding):
        return cached
    branding = _load()
    cache_guarded(lambda: cache.set(CACHE_KEY, branding, BRANDING_SECONDS), doing="caching the branding")
    return branding


def branding_forget() -> None:
    """Drop the cached copy: the next page reads the merchant's change."""
    cache_guarded(lambda: cache.delete(CACHE_KEY), doing="forgetting the branding")


class ForgetsBranding:
    """For the admin of what the cached branding holds (shop pages, categories): every save, delete or list
    edit drops the cached copy, so the next page shows it."""

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        branding_forget()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        branding_forget()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        branding_forget()

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        if request.method == "POST":  # positions edited in the list
            branding_forget()
        return response


DEFAULT_COLOUR = "#0b5cad"


def brand_colour(shop: ShopSettings) -> str:
    """The shop's primary colour, or the default when the stored one is not #rrggbb (saved around admin)."""
    colour = shop.primary_colour or ""
    return colour if re.fullmatch(r"#[0-9a-fA-F]{6}", colour) else DEFAULT_COLOUR


def text_colour_on(background: str) -> str:
    """Black or white, whichever reads better on a #rrggbb background."""
    return "#111111" if contrast_ratio(background, "#111111") >= contrast_ratio(background, "#ffffff") else "#ffffff"


def contrast_ratio(first: str, second: str) -> float:
    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def link_colour_for(primary: str) -> str:
    """The brand colour for links when it reads on white (WCAG AA, 4.5:1), else a dark blue that does."""
    return primary if contrast_ratio(primary, "#ffffff") >= 4.5 else "#0b4f94"


LOGO_SIDE = 192


def branding_logo_prepare(*, shop: ShopSettings) -> ShopSettings:
    """Make the header's WebP logo from the merchant's upload (or drop it with the upload).

    Raises catalog.images.ImageRejected for a file that is not a picture."""
    if shop.logo_webp:
        shop.logo_webp.delete(save=False)
    if shop.logo:
        variant = webp_variant(shop.logo, max_side=LOGO_SIDE, stem="logo")
        shop.logo_webp.save(variant.content.name, variant.content, save=False)
        shop.logo_width, shop.logo_height = variant.width, variant.height
    else:
        shop.logo_width = shop.logo_height = 0
    shop.save(update_fields=["logo_webp", "logo_width", "logo_height"])
    branding_forget()
    return shop
