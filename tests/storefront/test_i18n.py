"""Simplified Chinese: the catalog is complete and compiled, and pages and emails really come out in Chinese."""

import ast
import gettext
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import translation

from catalog.models import FulfilmentKind, Product
from orders.emails import order_email_send, order_url
from orders.errors import MESSAGES
from orders.models import OrderStatus, PaymentState
from storefront.forms import CheckoutForm, OrderLookupForm
from tests.factories import ProductFactory, add_keys

LC_MESSAGES = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
PO_PATH = LC_MESSAGES / "django.po"
MO_PATH = LC_MESSAGES / "django.mo"

DIGITAL_ONLY = "购物车中的所有商品均以数字方式交付，无需填写地址。"


@dataclass
class PoEntry:
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)


def po_parse(text: str) -> tuple[PoEntry, list[PoEntry]]:
    """A tiny .po reader: (header, entries). Obsolete (#~) entries are skipped."""
    entries: list[PoEntry] = []
    entry, key = PoEntry(), None

    def close():
        nonlocal entry, key
        if entry.msgstr:
            entries.append(entry)
        entry, key = PoEntry(), None

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#~"):
            continue
        continues = line.startswith('"') or line.startswith("msgstr[")  # more text, or the next plural form
        if not line or (isinstance(key, int) and not continues):
            close()  # a blank line, or anything but a continuation after a msgstr, ends the entry
        if line.startswith("#,"):
            entry.flags |= {flag.strip() for flag in line[2:].split(",")}
        elif not line or line.startswith("#"):
            continue
        elif line.startswith('"'):
            if isinstance(key, int):
                entry.msgstr[key] += ast.literal_eval(line)
            else:
                setattr(entry, key, getattr(entry, key) + ast.literal_eval(line))
        else:
            keyword, _, quoted = line.partition(" ")
            if keyword.startswith("msgstr"):
                key = int(keyword[7:-1]) if keyword.startswith("msgstr[") else 0
                entry.msgstr[key] = ast.literal_eval(quoted)
            else:
                key = keyword
                setattr(entry, key, ast.literal_eval(quoted))
    close()
    header = next(e for e in entries if e.msgid == "" and e.msgctxt is None)
    return header, [e for e in entries if e is not header]


def placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"%\([^)]+\)[sdif]|%[sdif]|\{\w*\}", text))


@pytest.fixture(scope="module")
def catalog() -> tuple[PoEntry, list[PoEntry]]:
    return po_parse(PO_PATH.read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _language_reset():
    """Requests activate a language on this thread; give the next test a clean slate."""
    yield
    translation.deactivate()


# --- (a) the catalog ---------------------------------------------------------------------------------


def test_po_header(catalog):
    header, entries = catalog
    assert entries, "no messages in the catalog"
    assert "fuzzy" not in header.flags
    meta = header.msgstr[0]
    assert "Language: zh_Hans\n" in meta
    assert "Plural-Forms: nplurals=1; plural=0;\n" in meta
    assert "Content-Type: text/plain; charset=UTF-8\n" in meta


def test_every_message_is_translated_and_none_is_fuzzy(catalog):
    _, entries = catalog
    untranslated = [e.msgid for e in entries if not e.msgstr or not all(s.strip() for s in e.msgstr.values())]
    fuzzy = [e.msgid for e in entries if "fuzzy" in e.flags]
    assert untranslated == []
    assert fuzzy == []


def test_translations_keep_their_placeholders_and_are_chinese(catalog):
    _, entries = catalog
    for entry in entries:
        for msgstr in entry.msgstr.values():
            assert placeholders(msgstr) == placeholders(entry.msgid), entry.msgid
            assert re.search(r"[\u4e00-\u9fff]", msgstr), f"not Chinese: {entry.msgid!r} -> {msgstr!r}"


def test_fixed_terms(catalog):
    _, entries = catalog
    translated = {e.msgid: e.msgstr[0] for e in entries if e.msgctxt is None}
    expected = {
        "License key": "许可证密钥",
        "Downloadable file": "可下载文件",
        "Service": "服务",
        "Physical item": "实物商品",
        "Awaiting payment": "等待付款",
        "Being checked": "审核中",
        "Awaiting stock": "等待补货",
        "Awaiting shipment": "等待发货",
        "Delivered": "已交付",
        "Shipped": "已发货",
        "Cancelled": "已取消",
        "Refunded": "已退款",
    }
    assert {msgid: translated.get(msgid) for msgid in expected} == expected


def test_python_strings_are_translated_at_run_time():
    """gettext_lazy strings in Python: errors, choices labels, form labels, language names."""
    lazy = [*MESSAGES.values(), *(label for _, label in settings.LANGUAGES)]
    lazy += [label for _, label in [*FulfilmentKind.choices, *OrderStatus.choices, *PaymentState.choices]]
    lazy += [f.label for f in CheckoutForm(requires_shipping=True).fields.values()]
    lazy += [f.label for f in OrderLookupForm().fields.values()]
    lazy += [Product._meta.get_field("name").verbose_name]
    for text in lazy:
        with translation.override("en"):
            english = str(text)
        with translation.override("zh-hans"):
            chinese = str(text)
        assert chinese != english and re.search(r"[\u4e00-\u9fff]", chinese), english
    with translation.override("zh-hans"):
        assert OrderStatus.AWAITING_STOCK.label == "等待补货"
        assert str(MESSAGES["quantity_over_maximum"]) % {"maximum": 5} == "此商品每单最多可购买 5 件。"


def test_compiled_catalog_matches_the_po(catalog):
    """The .mo is committed: it must say exactly what the .po says."""
    _, entries = catalog
    with MO_PATH.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for entry in entries:
        if entry.msgid_plural is not None and entry.msgctxt is not None:
            got = compiled.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, 1)
        elif entry.msgid_plural is not None:
            got = compiled.ngettext(entry.msgid, entry.msgid_plural, 1)
        elif entry.msgctxt is not None:
            got = compiled.pgettext(entry.msgctxt, entry.msgid)
        else:
            got = compiled.gettext(entry.msgid)
        assert got == entry.msgstr[0], f"django.mo is stale for {entry.msgid!r}: run compilemessages"


SKIPPED_DIRS = {".venv", ".git", ".cache", "locale", "tests", "media", "staticfiles", "node_modules", "__pycache__"}


def _not_scanned(directory: str, names: list[str]) -> set[str]:
    return {
        name
        for name in names
        if name in SKIPPED_DIRS or (not Path(directory, name).is_dir() and not name.endswith((".py", ".html", ".txt")))
    }


@pytest.mark.skipif(not shutil.which("xgettext"), reason="gettext tools are not installed")
def test_catalog_covers_every_translatable_string_in_the_source(catalog, tmp_path, monkeypatch):
    """Extract afresh from a copy of the source: no template or Python string may be missing from the .po.

    makemessages writes next to any `locale` folder it finds, so it runs on a copy without one,
    and the committed catalog is never touched.
    """
    _, entries = catalog
    source, output = tmp_path / "source", tmp_path / "locale"
    shutil.copytree(settings.BASE_DIR, source, ignore=_not_scanned)
    monkeypatch.chdir(source)
    monkeypatch.setattr(settings, "LOCALE_PATHS", [str(output)])
    call_command("makemessages", locale=["zh_Hans"], verbosity=0)
    _, fresh = po_parse((output / "zh_Hans" / "LC_MESSAGES" / "django.po").read_text(encoding="utf-8"))
    assert len(fresh) > 100
    have = {(e.msgctxt, e.msgid) for e in entries}
    missing = sorted(e.msgid for e in fresh if (e.msgctxt, e.msgid) not in have)
    assert missing == [], "run makemessages -l zh_Hans, then translate and compile these"


# --- (b) pages -----------------------------------------------------------------------------------------


@pytest.fixture
def keyboard(db):
    product = ProductFactory(
        name="Mechanical Keyboard Pro",
        name_zh_hans="机械键盘专业版",
        slug="keyboard-pro",
        kind=FulfilmentKind.LICENSE_KEY,
        max_per_order=3,
    )
    add_keys(product, 2)
    return product


def chinese_client() -> Client:
    client = Client()
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302
    return client


def test_product_list_in_chinese_after_switching_language(keyboard):
    page = chinese_client().get("/").content.decode()
    assert '<html lang="zh-hans">' in page
    assert '<h2 id="all-title">全部商品</h2>' in page
    assert "机械键盘专业版" in page and "Mechanical Keyboard Pro" not in page
    assert "即时密钥" in page  # the delivery badge of a license key
    assert "库存紧张" in page  # 2 keys, under the low-stock threshold of 5
    assert "购物车" in page and "查找我的订单" in page


@pytest.mark.parametrize("accept_language", ["zh-hans", "zh-CN,zh;q=0.9,en;q=0.8"])
def test_product_list_follows_the_browser_language(keyboard, accept_language):
    page = Client().get("/", HTTP_ACCEPT_LANGUAGE=accept_language).content.decode()
    assert '<h2 id="all-title">全部商品</h2>' in page
    assert "机械键盘专业版" in page


def test_product_list_stays_english_by_default(keyboard):
    page = Client().get("/").content.decode()
    assert '<h2 id="all-title">All products</h2>' in page
    assert "Mechanical Keyboard Pro" in page and "机械键盘专业版" not in page


def test_product_without_chinese_name_falls_back_to_english(db):
    ProductFactory(name="Plain English Name", kind=FulfilmentKind.SERVICE)
    page = chinese_client().get("/").content.decode()
    assert "Plain English Name" in page
    assert "服务" in page


def test_checkout_for_a_digital_cart_in_chinese(keyboard):
    client = chinese_client()
    client.post(f"/p/{keyboard.slug}/add/", {"quantity": "1"})
    response = client.get("/checkout/")
    assert response.status_code == 200
    page = response.content.decode()
    assert DIGITAL_ONLY in page
    assert "Everything in your cart is delivered digitally" not in page
    assert "<h1>结账</h1>" in page
    assert "电子邮箱地址" in page  # the form's lazy label
    assert "订单链接将发送到此邮箱。" in page
    assert "继续付款" in page
    assert "机械键盘专业版" in page


def test_checkout_asks_for_an_address_in_chinese_for_physical_goods(db):
    lamp = ProductFactory(name="Desk Lamp", name_zh_hans="台灯", kind=FulfilmentKind.PHYSICAL)
    client = chinese_client()
    client.post(f"/p/{lamp.slug}/add/", {"quantity": "1"})
    page = client.get("/checkout/").content.decode()
    assert "收货地址" in page and "邮政编码" in page and "运费" in page
    assert DIGITAL_ONLY not in page


def test_shopper_errors_are_translated_with_their_values(keyboard):
    client = chinese_client()
    page = client.post(f"/p/{keyboard.slug}/add/", {"quantity": "9"}, follow=True).content.decode()
    assert "此商品每单最多可购买 3 件。" in page


# --- (c) emails ----------------------------------------------------------------------------------------


@pytest.fixture
def chinese_order(make_order, keyboard):
    order = make_order((keyboard, 1))
    order.locale = "zh-hans"
    order.save(update_fields=["locale"])
    return order


@pytest.mark.parametrize(
    ("template", "subject", "body_phrase"),
    [
        ("order_delivered", "您的订单 {number} 已就绪", "感谢您的购买。"),
        ("order_awaiting_stock", "您的订单 {number} 正在等待补货", "我们已收到您的付款"),
        ("order_link", "您的订单 {number} 的链接", "如果这不是您本人的操作，请忽略此邮件。"),
    ],
)
def test_order_email_is_rendered_in_the_order_language(chinese_order, template, subject, body_phrase):
    order_email_send(order=chinese_order, template=template)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == subject.format(number=chinese_order.number)
    assert body_phrase in message.body
    assert order_url(chinese_order) in message.body
    assert message.to == [chinese_order.email]
    assert translation.get_language() == settings.LANGUAGE_CODE  # the override did not leak


def test_english_order_email_stays_english(make_order, keyboard):
    order = make_order((keyboard, 1))
    with translation.override("zh-hans"):  # the shopper's language decides, not the sender's
        order_email_send(order=order, template="order_delivered")
    assert mail.outbox[0].subject == f"Your order {order.number} is ready"
