"""Template helpers of the shop's pages: safe Markdown, absolute URLs, schema.org data."""

import json

from django import template
from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from storefront.markdown import markdown_to_html, markdown_to_text

register = template.Library()

# What json_script escapes, so the data cannot close its <script> element or open a comment.
_JSON_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


@register.filter
def markdown(text: str) -> SafeString:
    """Merchant-written Markdown as sanitised HTML (storefront.markdown)."""
    return markdown_to_html(text or "")


@register.filter
def plain_summary(text: str, limit: int = 160) -> str:
    return markdown_to_text(text or "", limit=limit)


@register.simple_tag
def absolute(path: str) -> str:
    """The address search engines and share previews use: SITE_URL plus the path."""
    return settings.SITE_URL + path if path.startswith("/") else path


@register.simple_tag(takes_context=True)
def ld_json(context, data: dict) -> SafeString:
    """schema.org data as <script type="application/ld+json">, carrying this request's CSP nonce."""
    request = context.get("request")
    nonce = getattr(request, "csp_nonce", "")
    payload = json.dumps(data, ensure_ascii=False, sort_keys=True).translate(_JSON_ESCAPES)
    return format_html('<script type="application/ld+json" nonce="{}">{}</script>', nonce, mark_safe(payload))


@register.simple_tag
def asset(path: str) -> str:
    """The URL of one of the shop's static files; its plain name when the manifest lacks it (collectstatic not
    run yet), so an error page never fails on its own stylesheet."""
    try:
        return staticfiles_storage.url(path)
    except ValueError:
        return settings.STATIC_URL + path
