"""The demo's brand (`make demo`): a name and logo, an announcement, categories, footer pages, a picture and
quantity prices for the products. Pictures are drawn here with Pillow, so the demo needs no files of its own.
Safe to run again: what exists is left as the merchant may have changed it."""

import io

from django.core.files.base import ContentFile
from PIL import Image, ImageDraw, ImageFont

from catalog.models import Category, PriceBreak, Product, ProductImage
from catalog.services import product_image_prepare
from storefront.branding import branding_forget, branding_logo_prepare
from storefront.models import ShopPage, ShopSettings

BRAND = {
    "name": "Keystone Digital",
    "name_zh_hans": "基石数码",
    "tagline": "Software keys, templates and expert help, delivered the moment you pay.",
    "tagline_zh_hans": "软件密钥、模板和专家服务，付款后即刻送达。",
    "primary_colour": "#0b5cad",
    "announcement": "Spring sale: 3 or more Photo Editor Pro keys at a lower price each.",
    "announcement_zh_hans": "春季促销：照片编辑专业版密钥买 3 个及以上享批发价。",
}
CATEGORIES = [
    ("software", "Software", "软件", 1),
    ("templates", "Templates", "模板", 2),
    ("services", "Services", "服务", 3),
    ("hardware", "Hardware", "硬件", 4),
]
PRODUCT_SHELF = {  # slug: (category, featured, colour)
    "photo-editor-pro": ("software", True, "#0b5cad"),
    "design-templates-pack": ("templates", True, "#1d7a4a"),
    "setup-consultation": ("services", True, "#6b3fa0"),
    "usb-install-stick": ("hardware", False, "#b5651d"),
    "pro-club-monthly": ("services", True, "#a0253f"),
}
PAGES = [
    {
        "slug": "terms",
        "title": "Terms of sale",
        "title_zh_hans": "销售条款",
        "position": 1,
        "body": "## Who we are\n\nKeystone Digital sells software keys, files and services.\n\n"
        "## Delivery\n\nDigital goods are delivered on screen and by email as soon as your payment clears.",
        "body_zh_hans": "## 关于我们\n\n基石数码销售软件密钥、文件和服务。\n\n"
        "## 交付\n\n付款确认后，数字商品立即显示在页面上并发送到您的邮箱。",
    },
    {
        "slug": "refunds",
        "title": "Refund policy",
        "title_zh_hans": "退款政策",
        "position": 2,
        "body": "You can get a refund within **14 days** while a key is unrevealed and a file not downloaded.\n\n"
        "- Unrevealed keys: full refund\n- Orders waiting for stock: refund at any time",
        "body_zh_hans": "在密钥未显示、文件未下载的情况下，**14 天**内可退款。\n\n"
        "- 未显示的密钥：全额退款\n- 等待库存的订单：随时可退款",
    },
    {
        "slug": "privacy",
        "title": "Privacy",
        "title_zh_hans": "隐私",
        "position": 3,
        "body": "We keep your data only as long as the law and payment disputes need, and we never sell it.\n\n"
        "## What we keep, and for how long\n\n"
        "- **Your email address and your orders** (products, amounts, payments, refunds): for as long as "
        "accounting law requires. Once you ask us to erase your data, your orders keep only what accounting "
        "needs, without your email address, name or street address.\n"
        "- **IP address, browser and device details**, recorded when you order, reveal a key or download a "
        "file: they help us stop fraud and are our evidence if a payment is disputed. We delete them "
        "**180 days** after the order, except on an order whose dispute is still open.\n"
        "- **Dispute evidence**: a card payment can be disputed for about **120 days**, so an order paid "
        "more recently keeps its evidence that long, even after you ask us to erase your data; then it is "
        "erased too.\n"
        "- **Your account** (optional): your email address and, if you set one, your password (stored "
        "hashed). Sign-in links work once, for 15 minutes.\n\n"
        "## Your rights\n\n"
        "[Sign in to your account](/account/) with your email address to download all your data as a JSON "
        "file, or to erase your account and personal data.",
        "body_zh_hans": "我们只在法律和支付争议处理需要的期限内保存您的数据，并且从不出售。\n\n"
        "## 我们保存什么、保存多久\n\n"
        "- **您的邮箱地址和订单**（商品、金额、付款、退款）：按会计法规要求的期限保存。您要求删除数据后，"
        "订单只保留会计所需的信息，不再包含您的邮箱地址、姓名和街道地址。\n"
        "- **IP 地址、浏览器和设备信息**：在您下单、显示密钥或下载文件时记录，用于防范欺诈，"
        "并在付款争议时作为证据。我们在下单 **180 天**后删除这些信息，争议尚未结束的订单除外。\n"
        "- **争议证据**：银行卡付款可在约 **120 天**内发起争议，因此较近付款的订单会在这段时间内保留证据，"
        "即使您已要求删除数据；期满后也会删除。\n"
        "- **您的账户**（可选）：您的邮箱地址，以及您设置的密码（以哈希形式保存）。登录链接只能使用一次，"
        "有效期 15 分钟。\n\n"
        "## 您的权利\n\n"
        "用您的邮箱地址[登录您的账户](/account/)，即可将全部数据下载为 JSON 文件，或删除您的账户和个人数据。",
    },
    {
        "slug": "contact",
        "title": "Contact",
        "title_zh_hans": "联系我们",
        "position": 4,
        "body": "Write to [help@example.com](mailto:help@example.com) with your order number. "
        "We answer within one working day.",
        "body_zh_hans": "请发邮件至 [help@example.com](mailto:help@example.com) 并附上订单号。"
        "我们会在一个工作日内回复。",
    },
]


def demo_picture(title: str, colour: str, *, size: tuple[int, int] = (1200, 900), logo: bool = False) -> ContentFile:
    """A product picture: the brand's shapes on the product's colour, with its name."""
    picture = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(picture)
    width, height = size
    draw.ellipse((width * 0.55, -height * 0.2, width * 1.2, height * 0.65), fill=_mix(colour, "#ffffff", 0.18))
    draw.rounded_rectangle(
        (width * 0.08, height * 0.58, width * 0.5, height * 0.86), radius=40, fill=_mix(colour, "#000000", 0.2)
    )
    if logo:  # one big letter in the middle
        font = ImageFont.load_default(size=int(height * 0.62))
        draw.text((width / 2, height / 2), title, fill="#ffffff", font=font, anchor="mm")
    else:
        font = ImageFont.load_default(size=max(24, width // 14))
        draw.text((width * 0.08, height * 0.2), title, fill="#ffffff", font=font)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name=f"{title.lower().replace(' ', '-')}.png")


def _mix(colour: str, other: str, share: float) -> str:
    a = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(other[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * share):02x}" for x, y in zip(a, b, strict=True))


def demo_shop_seed() -> None:
    shop, created = ShopSettings.objects.get_or_create(pk=1, defaults=BRAND)
    if created or not shop.logo:
        shop.logo.save("logo.png", demo_picture("K", BRAND["primary_colour"], size=(192, 192), logo=True), save=True)
        branding_logo_prepare(shop=shop)
    categories = {}
    for slug, name, name_zh, position in CATEGORIES:
        categories[slug], _ = Category.objects.get_or_create(
            slug=slug, defaults={"name": name, "name_zh_hans": name_zh, "position": position}
        )
    for page in PAGES:
        ShopPage.objects.get_or_create(slug=page["slug"], defaults=page)
    for product in Product.objects.filter(slug__in=PRODUCT_SHELF):
        category, featured, colour = PRODUCT_SHELF[product.slug]
        if product.category_id is None:
            product.category, product.featured = categories[category], featured
            product.save(update_fields=["category", "featured"])
        if not product.images.exists():
            image = ProductImage.objects.create(
                product=product, original=demo_picture(product.name.split(" — ")[0][:22], colour), alt=product.name
            )
            product_image_prepare(image=image)
    key_product = Product.objects.filter(slug="photo-editor-pro").first()
    if key_product is not None and not key_product.price_breaks.exists():
        PriceBreak.objects.bulk_create(
            [
                PriceBreak(product=key_product, min_quantity=3, unit_amount=2500),
                PriceBreak(product=key_product, min_quantity=5, unit_amount=2200),
            ]
        )
    branding_forget()
