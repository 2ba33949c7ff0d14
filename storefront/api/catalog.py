from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers

from catalog.models import FulfilmentKind, Product
from catalog.selectors import product_in_stock, product_list_for_sale, product_stock_label
from storefront.api_errors import error_responses


class ProductSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="localized_name")
    description = serializers.CharField(source="localized_description")
    requires_shipping = serializers.BooleanField()
    in_stock = serializers.SerializerMethodField()
    stock = serializers.SerializerMethodField(help_text='{"state": "in_stock|low|sold_out", "count": int or null}')
    billing_interval = serializers.SerializerMethodField(
        help_text='How often it renews: "month", "quarter", "year", or null for a one-off product.'
    )
    key_source = serializers.SerializerMethodField(
        help_text='How a license-key product\'s keys are made: "pool", "shared" or "generated"; null for other kinds.'
    )
    activation_limit = serializers.SerializerMethodField(
        help_text="Machines each key may be activated on through the license API; null: unlimited or not tracked."
    )
    price_breaks = serializers.SerializerMethodField(
        help_text='Quantity prices, lowest quantity first: [{"min_quantity": 10, "unit_amount": 1500}] (minor units '
        "per unit from that quantity on; the cart and checkout apply the best one reached)."
    )

    class Meta:
        model = Product
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "price_amount",
            "currency",
            "max_per_order",
            "requires_shipping",
            "in_stock",
            "stock",
            "billing_interval",
            "trial_days",
            "price_breaks",
            "key_source",
            "activation_limit",
        ]

    def get_in_stock(self, product) -> bool:
        return product_in_stock(product)

    def get_stock(self, product) -> dict:
        return product_stock_label(product)

    def get_billing_interval(self, product) -> str | None:
        return product.billing_interval or None

    def get_key_source(self, product) -> str | None:
        if product.kind != FulfilmentKind.LICENSE_KEY:
            return None
        if product.is_reusable_key:
            return "shared"
        return "generated" if product.keys_unlimited else "pool"

    def get_activation_limit(self, product) -> int | None:
        policy = getattr(product, "license_policy", None)  # fetched with the product (catalog.selectors)
        return policy.activation_limit if policy is not None and policy.tracked else None

    def get_price_breaks(self, product) -> list[dict]:
        return [
            {"min_quantity": pb.min_quantity, "unit_amount": pb.unit_amount}
            for pb in product.price_breaks.all()
            if pb.unit_amount < product.price_amount
        ]


@extend_schema(tags=["catalog"])
class ProductListApi(generics.ListAPIView):
    serializer_class = ProductSerializer
    pagination_class = None

    def get_queryset(self):
        return product_list_for_sale().select_related("license_policy").prefetch_related("price_breaks")


@extend_schema(
    tags=["catalog"],
    parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$")],
    responses={200: ProductSerializer, **error_responses(404)},
)
class ProductDetailApi(generics.RetrieveAPIView):
    serializer_class = ProductSerializer
    lookup_field = "slug"

    def get_queryset(self):
        return product_list_for_sale().select_related("license_policy").prefetch_related("price_breaks")
