"""Catalog writes that do more than save a row."""

from django.db import transaction

from catalog.images import LARGE_SIDE, THUMB_SIDE, webp_variant
from catalog.models import ProductImage


@transaction.atomic
def product_image_prepare(*, image: ProductImage) -> ProductImage:
    """Make the WebP sizes of a product image from its upload (large for the product page, thumb for lists).

    Called by admin after the upload is saved; raises catalog.images.ImageRejected for a file that is not
    a picture."""
    stem = f"{image.product.slug}-{image.pk}"
    large = webp_variant(image.original, max_side=LARGE_SIDE, stem=stem)
    thumb = webp_variant(image.original, max_side=THUMB_SIDE, stem=f"{stem}-thumb")
    for field in (image.large, image.thumb):
        if field:
            field.delete(save=False)
    image.large.save(large.content.name, large.content, save=False)
    image.thumb.save(thumb.content.name, thumb.content, save=False)
    image.large_width, image.large_height = large.width, large.height
    image.thumb_width, image.thumb_height = thumb.width, thumb.height
    image.save(update_fields=["large", "large_width", "large_height", "thumb", "thumb_width", "thumb_height"])
    return image
