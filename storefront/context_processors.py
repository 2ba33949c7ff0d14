from orders.cart import cart_read
from storefront.branding import brand_colour, branding_get


def cart_summary(request):
    if not hasattr(request, "session"):
        return {}
    return {"cart_count": sum(cart_read(request.session).values())}


def shop(request):
    """The brand every shopper page wears (cached: storefront.branding)."""
    branding = branding_get()
    return {
        "shop": branding.settings,
        "shop_categories": branding.categories,
        "shop_pages": branding.pages,
        "brand_colour": brand_colour(branding.settings),
    }
