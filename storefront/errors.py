"""Human error pages that work under the Content-Security-Policy: the shop's stylesheet, no inline code.

The 500 page is rendered from the template alone (no context processors, no database, no session): whatever
broke the request must not break its error page too.
"""

from django.http import HttpResponseNotFound, HttpResponseServerError
from django.shortcuts import render
from django.template.loader import render_to_string

from storefront.api_errors import api_not_found
from storefront.outages import OUTAGE_ERRORS


def page_not_found(request, exception=None):
    if request.path.startswith("/api/"):  # a path even the API's catch-all did not match: still the envelope
        return api_not_found(request)
    try:
        return render(request, "404.html", status=404)
    except OUTAGE_ERRORS:  # the brand could not be read (database away): a page without it
        return HttpResponseNotFound(render_to_string("500.html", {"not_found": True}))


def server_error(request):
    return HttpResponseServerError(render_to_string("500.html"))
