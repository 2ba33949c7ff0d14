"""One view that runs one query: the ceiling `make bench` sets the shop's own pages and pipeline beside."""

from django.http import HttpResponse
from django.urls import path

from catalog.models import Product


def bare(request):
    return HttpResponse(str(Product.objects.values_list("pk", flat=True).first()), content_type="text/plain")


urlpatterns = [path("bare/", bare)]
