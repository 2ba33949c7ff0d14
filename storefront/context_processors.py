from orders.cart import cart_read


def cart_summary(request):
    if not hasattr(request, "session"):
        return {}
    return {"cart_count": sum(cart_read(request.session).values())}
