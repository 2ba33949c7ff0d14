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
        "body": "We keep your email, order and payment evidence only as long as the law and disputes need. "
        "We never sell your data.",
        "body_zh_hans": "我们只在法律和争议处理需要的期限内保存您的邮箱、订单和付款凭证。我们从不出售您的数据。",
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
