from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from storefront import seo, shop_views, views
from storefront.api.cart import CartApi
from storefront.api.catalog import ProductDetailApi, ProductListApi
from storefront.api.orders import CheckoutApi, OrderPayApi, OrderPaymentMethodsApi, OrderStatusApi
from storefront.api.reveal import OrderRevealApi
from storefront.api_errors import api_not_found
from storefront.media import public_media
from storefront.webhooks import channel_webhook, stripe_webhook

api = [
    path("products/", ProductListApi.as_view(), name="api-products"),
    path("products/<slug:slug>/", ProductDetailApi.as_view(), name="api-product"),
    path("cart/", CartApi.as_view(), name="api-cart"),
    path("checkout/", CheckoutApi.as_view(), name="api-checkout"),
    path("orders/<str:token>/", OrderStatusApi.as_view(), name="api-order"),
    path("orders/<str:token>/pay/", OrderPayApi.as_view(), name="api-order-pay"),
    path("orders/<str:token>/payment-methods/", OrderPaymentMethodsApi.as_view(), name="api-order-payment-methods"),
    path("orders/<str:token>/reveal/", OrderRevealApi.as_view(), name="api-order-reveal"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^[\s\S]*$", api_not_found, name="api-not-found"),  # last: a path no endpoint matches, newlines too
]

urlpatterns = [
    path("", shop_views.home, name="product-list"),
    path("c/<slug:slug>/", shop_views.category_view, name="category"),
    path("search/", shop_views.search_view, name="search"),
    path("p/<slug:slug>/", shop_views.product_detail, name="product-detail"),
    path("pages/<slug:slug>/", shop_views.shop_page, name="shop-page"),
    path("media/<path:path>", public_media, name="public-media"),
    path("brand.css", shop_views.brand_css, name="brand-css"),
    path("sitemap.xml", seo.sitemap, name="sitemap"),
    path("robots.txt", seo.robots_txt, name="robots"),
    path("favicon.ico", seo.favicon, name="favicon"),
    path("p/<slug:slug>/add/", views.cart_add_view, name="cart-add"),
    path("cart/", views.cart_view, name="cart"),
    path("checkout/", views.checkout_view, name="checkout"),
    path("pay/<str:token>/", views.pay_view, name="pay"),
    path("pay/<str:token>/return/", views.pay_return, name="pay-return"),
    path("order/lookup/", views.order_lookup, name="order-lookup"),
    path("order/<str:token>/", views.order_detail, name="order-detail"),
    path("order/<str:token>/reveal/", views.order_reveal, name="order-reveal"),
    path("order/<str:token>/refund/<str:signature>/", views.order_refund, name="order-refund"),
    path("download/<str:token>/", views.download_view, name="download"),
    path("payments/stripe/webhook/", stripe_webhook, name="stripe-webhook"),
    path("payments/webhook/<slug:code>/", channel_webhook, name="channel-webhook"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", include(api)),
    path("review/", include("storefront.review.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "storefront.errors.page_not_found"
handler500 = "storefront.errors.server_error"
