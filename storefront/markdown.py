"""Merchant-written Markdown (product descriptions, footer pages) turned into HTML that is safe to show.

Markdown renders, then nh3 (ammonia) keeps only the tags and attributes below: no scripts, no style, no event
handlers, links limited to http(s) and mailto and marked rel="noopener noreferrer nofollow". The result of a
text is kept in memory, so a product page does not render its description again on every request.
"""

import html
from functools import lru_cache

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "b", "i", "code", "pre", "blockquote", "ul", "ol", "li", "a", "hr",
    "h2", "h3", "h4", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=512)
def markdown_to_html(text: str) -> SafeString:
    """The sanitised HTML of a Markdown text (a heading # becomes h2: the page has its own h1)."""
    rendered = markdown.markdown(text or "", extensions=["tables", "sane_lists"], output_format="html")
    rendered = rendered.replace("<h1>", "<h2>").replace("</h1>", "</h2>")
    clean = nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(clean)  # noqa: S308 - sanitised by nh3 just above


def markdown_to_text(text: str, *, limit: int = 160) -> str:
    """Plain text of a Markdown text, cut at a word near `limit` (meta descriptions)."""
    plain = html.unescape(nh3.clean(markdown.markdown(text or ""), tags=set()))
    plain = " ".join(plain.split())
    if len(plain) <= limit:
        return plain
    return plain[:limit].rsplit(" ", 1)[0].rstrip(",.;:") + "…"
