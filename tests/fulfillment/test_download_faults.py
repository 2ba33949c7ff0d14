"""A download whose file is missing from storage: a clear page, and none of the shopper's downloads used up."""

import logging
import re

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from catalog.models import FulfilmentKind
from fulfillment.models import DeliveryAccess
from orders.models import Order
from tests.conftest import record_payment
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def download_product(settings, tmp_path):
    """A download product (3 downloads) whose file lives in a throwaway storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(tmp_path)}},
    }
    product = ProductFactory(kind=FulfilmentKind.DOWNLOAD, download_max=3, download_ttl_hours=48)
    product.download_file.save("guide.pdf", ContentFile(b"%PDF-1.4 the guide"), save=True)
    return product


def download_link(client, order: Order) -> str:
    page = client.get(reverse("order-detail", kwargs={"token": order.token})).content.decode()
    (link,) = re.findall(r'href="(/download/[^"]+/)"', page)
    return link


def test_a_download_whose_file_is_missing_answers_a_clear_page_and_uses_up_nothing(
    client, make_order, download_product, django_capture_on_commit_callbacks, caplog
):
    # Given a delivered download whose file has since gone missing from storage
    order = record_payment(make_order((download_product, 1)), django_capture_on_commit_callbacks)
    link = download_link(client, order)
    name = download_product.download_file.name
    download_product.download_file.storage.delete(name)

    # When the shopper tries it, again and again (more often than the downloads they have)
    with caplog.at_level(logging.ERROR, logger="fulfillment.services"):
        answers = [client.get(link) for _ in range(4)]
        in_chinese = client.get(link, HTTP_ACCEPT_LANGUAGE="zh-hans")

    # Then each try says what happened, in their language, and counts nothing
    for answer in answers:
        assert answer.status_code == 503
        page = answer.content.decode()
        assert "This file cannot be downloaded right now" in page
        assert "Your downloads left are unchanged." in page
    assert "此文件暂时无法下载" in in_chinese.content.decode()
    line = order.lines.get()
    assert line.download_count == 0
    assert not DeliveryAccess.objects.filter(line=line).exists()
    # and staff are told which order met the missing file
    assert any(order.number in record.getMessage() for record in caplog.records)

    # When the merchant puts the file back, the shopper still has all three downloads
    download_product.download_file.storage.save(name, ContentFile(b"%PDF-1.4 the guide"))
    response = client.get(link)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"%PDF-1.4 the guide"
    assert order.lines.get().download_count == 1
