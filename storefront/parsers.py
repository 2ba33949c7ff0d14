"""The API's JSON parser: DRF's, with a bound on how deeply a body may nest."""

from django.utils.translation import gettext as _
from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 32  # the deepest body the API documents is 3 levels (checkout: lines, then a line)


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser (strict: no NaN or Infinity) that refuses bodies nested deeper than MAX_JSON_DEPTH.

    Python's decoder recurses once per level, so a few kilobytes of `[` would raise RecursionError, a 500:
    that is a ParseError (400) here. A body shallow enough to decode but deeper than the bound is refused too,
    so nothing after the parser (serializers, error rendering) ever walks through it.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_("JSON parse error - the body is nested too deeply.")) from None
        if _nested_deeper_than(data, MAX_JSON_DEPTH):
            raise ParseError(_("JSON parse error - the body is nested too deeply."))
        return data


def _nested_deeper_than(data, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels, found without recursion."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
