from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from storefront import account_views, coupon_views, license_views, seo, shop_views, subscription_views, views
from storefront.admin.dashboard import merchant_dashboard
from storefront.api import merchant
from storefront.api.cart import CartApi
from storefront.api.catalog import ProductDetailApi, ProductListApi
from storefront.api.licenses import ApiV1NotFound, LicenseActivateApi, LicenseDeactivateApi, LicenseValidateApi
from storefront.api.orders import CheckoutApi, OrderPayApi, OrderPaymentMethodsApi, OrderStatusApi
from storefront.api.reveal import OrderRevealApi
from storefront.api_errors import api_not_found
from storefront.media import public_media
from storefront.webhooks import channel_webhook, stripe_webhook

api_v1 = [
    path("licenses/activate", LicenseActivateApi.as_view(), name="api-license-activate"),
    path("licenses/validate", LicenseValidateApi.as_view(), name="api-license-validate"),
    path("licenses/deactivate", LicenseDeactivateApi.as_view(), name="api-license-deactivate"),
    path("merchant/orders", merchant.MerchantOrderListApi.as_view(), name="api-merchant-orders"),
    path("merchant/orders/<str:number>", merchant.MerchantOrderDetailApi.as_view(), name="api-merchant-order"),
    path("merchant/licenses", merchant.MerchantLicenseListApi.as_view(), name="api-merchant-licenses"),
    path(
        "merchant/licenses/<int:license_id>", merchant.MerchantLicenseDetailApi.as_view(), name="api-merchant-license"
    ),
    path(
        "merchant/licenses/<int:license_id>/activations",
        merchant.MerchantLicenseActivationsApi.as_view(),
        name="api-merchant-license-activations",
    ),
    path(
        "merchant/licenses/<int:license_id>/disable",
        merchant.MerchantLicenseDisableApi.as_view(),
        name="api-merchant-license-disable",
    ),
    path(
        "merchant/licenses/<int:license_id>/enable",
        merchant.MerchantLicenseEnableApi.as_view(),
        name="api-merchant-license-enable",
    ),
    path(
        "merchant/licenses/<int:license_id>/reset-activations",
        merchant.MerchantLicenseResetApi.as_view(),
        name="api-merchant-license-reset",
    ),
    re_path(r"^[\s\S]*$", ApiV1NotFound.as_view(), name="api-v1-not-found"),  # the JSON 404, any method
]

api = [
    path("products/", ProductListApi.as_view(), name="api-products"),
    path("products/<slug:slug>/", ProductDetailApi.as_view(), name="api-product"),
    path("cart/", CartApi.as_view(), name="api-cart"),
    path("checkout/", CheckoutApi.as_view(), name="api-checkout"),
    path("orders/<str:token>/", OrderStatusApi.as_view(), name="api-order"),
    path("orders/<str:token>/pay/", OrderPayApi.as_view(), name="api-order-pay"),
    path("orders/<str:token>/payment-methods/", OrderPaymentMethodsApi.as_view(), name="api-order-payment-methods"),
    path("orders/<str:token>/reveal/", OrderRevealApi.as_view(), name="api-order-reveal"),
    path("v1/", include(api_v1)),  # the license API and the merchant API (storefront/api/licenses.py, merchant.py)
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
    path("cart/coupon/", coupon_views.cart_coupon_view, name="cart-coupon"),
    path("checkout/", views.checkout_view, name="checkout"),
    path("pay/<str:token>/", views.pay_view, name="pay"),
    path("pay/<str:token>/return/", views.pay_return, name="pay-return"),
    path("order/lookup/", views.order_lookup, name="order-lookup"),
    path("account/", account_views.account_home, name="account"),
    path("account/licenses/", license_views.account_licenses, name="account-licenses"),
    path("account/licenses/free/", license_views.account_activation_free, name="account-activation-free"),
    path("account/sign-in/", account_views.account_sign_in, name="account-sign-in"),
    path("account/sign-in/link/", account_views.account_link, name="account-link"),  # the token in its #fragment
    path("account/sign-out/", account_views.account_sign_out, name="account-sign-out"),
    path("account/password/", account_views.account_password, name="account-password"),
    path("account/my-data.json", account_views.account_data, name="account-data"),
    path("account/erase/", account_views.account_erase, name="account-erase"),
    path("order/<str:token>/", views.order_detail, name="order-detail"),
    path("order/<str:token>/reveal/", views.order_reveal, name="order-reveal"),
    path("order/<str:token>/activations/free/", license_views.order_activation_free, name="order-activation-free"),
    path("order/<str:token>/refund/<str:signature>/", views.order_refund, name="order-refund"),
    path("download/<str:token>/", views.download_view, name="download"),
    path("subscription/<str:token>/", subscription_views.subscription_manage, name="subscription-manage"),
    path("subscription/<str:token>/change/", subscription_views.subscription_change, name="subscription-change"),
    path("subscription/<str:token>/card/", subscription_views.subscription_card, name="subscription-card"),
    path("payments/stripe/webhook/", stripe_webhook, name="stripe-webhook"),
    path("payments/webhook/<slug:code>/", channel_webhook, name="channel-webhook"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", include(api)),
    path("review/", include("storefront.review.urls")),
    path("staff/2fa/", include("storefront.twofactor.urls")),  # second factor for admin and the review queue
    path("admin/dashboard/", admin.site.admin_view(merchant_dashboard), name="admin-dashboard"),
    path("admin/", admin.site.urls),
]

handler404 = "storefront.errors.page_not_found"
handler500 = "storefront.errors.server_error"
