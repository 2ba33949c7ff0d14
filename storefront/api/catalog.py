from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers

from catalog.models import Product
from catalog.selectors import product_in_stock, product_list_for_sale, product_stock_label
from storefront.api_errors import error_responses


class ProductSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="localized_name")
    description = serializers.CharField(source="localized_description")
    requires_shipping = serializers.BooleanField()
    in_stock = serializers.SerializerMethodField()
    stock = serializers.SerializerMethodField(help_text='{"state": "in_stock|low|sold_out", "count": int or null}')

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
        ]

    def get_in_stock(self, product) -> bool:
        return product_in_stock(product)

    def get_stock(self, product) -> dict:
        return product_stock_label(product)


@extend_schema(tags=["catalog"])
class ProductListApi(generics.ListAPIView):
    serializer_class = ProductSerializer
    pagination_class = None

    def get_queryset(self):
        return product_list_for_sale()


@extend_schema(
    tags=["catalog"],
    parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$")],
    responses={200: ProductSerializer, **error_responses(404)},
)
class ProductDetailApi(generics.RetrieveAPIView):
    serializer_class = ProductSerializer
    lookup_field = "slug"

    def get_queryset(self):
        return product_list_for_sale()
