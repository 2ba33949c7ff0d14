"""Public pictures (product images, the logo) served by the shop from the "public" storage.

Their names carry a digest of their content (catalog.images), so browsers and proxies may keep them a year.
Only the folders the shop writes pictures to are served, and only pictures.
"""

import mimetypes

from django.core.files.storage import storages
from django.http import FileResponse, Http404
from django.views.decorators.http import require_GET

SERVED_FOLDERS = ("products/", "brand/")
SERVED_TYPES = {"image/webp", "image/png", "image/jpeg", "image/gif", "image/svg+xml"}
YEAR_SECONDS = 365 * 24 * 3600


@require_GET
def public_media(request, path: str):
    content_type, _ = mimetypes.guess_type(path)
    if ".." in path.split("/") or not path.startswith(SERVED_FOLDERS) or content_type not in SERVED_TYPES:
        raise Http404
    storage = storages["public"]
    try:
        handle = storage.open(path, "rb")
    except (FileNotFoundError, OSError):
        raise Http404 from None
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = f"public, max-age={YEAR_SECONDS}, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    if content_type == "image/svg+xml":  # an SVG opened on its own runs no script of the merchant's
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response
