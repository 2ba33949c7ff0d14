"""Pictures the shop serves: the merchant's upload turned into WebP at a few sizes, with their dimensions.

Resized once, when the upload is saved, never per request. File names carry a digest of the content, so a
browser may keep them for a year (storefront.media serves them as immutable).
"""

import hashlib
import io
from dataclasses import dataclass

from django.core.files.base import ContentFile
from PIL import Image, ImageOps, UnidentifiedImageError

LARGE_SIDE = 1200
THUMB_SIDE = 480
WEBP_QUALITY = 80
MAX_PIXELS = 40_000_000  # a decompression bomb is refused, not resized


class ImageRejected(ValueError):
    """The upload is not a picture Pillow can read."""


@dataclass(frozen=True)
class WebpVariant:
    content: ContentFile
    width: int
    height: int


def webp_variant(source, *, max_side: int, stem: str) -> WebpVariant:
    """The picture fitted inside max_side x max_side (never enlarged), as WebP named <stem>-<digest>.webp."""
    source.seek(0)
    try:
        with Image.open(source) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise ImageRejected("image too large")
            picture = ImageOps.exif_transpose(opened)
            picture = picture.convert("RGBA" if picture.mode in ("RGBA", "LA", "P") else "RGB")
            picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            picture.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=4)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageRejected(str(exc)) from exc
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:12]
    return WebpVariant(
        content=ContentFile(data, name=f"{stem}-{digest}.webp"), width=picture.width, height=picture.height
    )
