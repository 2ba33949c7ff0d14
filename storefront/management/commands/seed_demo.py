import importlib

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from catalog.models import BillingInterval, FulfilmentKind, Product
from fulfillment.keys import keys_add_to_pool
from fulfillment.models import KeySource, LicensePolicy
from orders.models import Coupon, CouponKind
from storefront.demo_shop import demo_shop_seed

# The demo's logins, printed by `manage.py demo`. Development only, like storefront.settings_demo.
MERCHANT_LOGIN = ("merchant", "merchant-demo-pass")  # superuser: the admin
REVIEWER_LOGIN = ("reviewer", "reviewer-demo-pass")  # not staff: only the review queue at /review/
REVIEWERS_GROUP = importlib.import_module("riskengine.migrations.0004_reviewers_group").REVIEWERS_GROUP

DEMO_PRODUCTS = [
    {
        "slug": "photo-editor-pro",
        "name": "Photo Editor Pro — 1 year license",
        "name_zh_hans": "照片编辑专业版 — 一年许可证",
        "kind": FulfilmentKind.LICENSE_KEY,
        "price_amount": 2900,
        "description": "A license key for one computer, valid **one year**.\n\n"
        "- Free updates for the year\n- Works offline after activation\n- Buy 3 or more for a lower price each",
        "description_zh_hans": "一台电脑的许可证密钥，有效期一年。",
        "redemption_instructions": "Open Photo Editor Pro, choose Help > Activate and paste the key.",
    },
    {
        "slug": "design-templates-pack",
        "name": "Design templates pack (ZIP)",
        "name_zh_hans": "设计模板包（ZIP）",
        "kind": FulfilmentKind.DOWNLOAD,
        "price_amount": 1500,
        "description": "Forty slide and poster templates.",
        "description_zh_hans": "四十个幻灯片和海报模板。",
    },
    {
        "slug": "setup-consultation",
        "name": "30-minute setup consultation",
        "name_zh_hans": "30 分钟安装咨询",
        "kind": FulfilmentKind.SERVICE,
        "price_amount": 4900,
        "description": "A video call with an expert to set up your software.",
        "description_zh_hans": "与专家视频通话，帮您安装软件。",
        "service_instructions": "Reply to your confirmation email with three time slots that suit you.",
    },
    {
        "slug": "usb-install-stick",
        "name": "USB install stick",
        "name_zh_hans": "USB 安装盘",
        "kind": FulfilmentKind.PHYSICAL,
        "price_amount": 1900,
        "description": "The installer on a USB stick, shipped to you.",
        "description_zh_hans": "装有安装程序的 U 盘，寄送给您。",
    },
    {
        "slug": "pro-club-monthly",
        "name": "Pro Club membership — monthly",
        "name_zh_hans": "专业俱乐部会员 — 按月",
        "kind": FulfilmentKind.MEMBERSHIP,
        "billing_interval": BillingInterval.MONTH,
        "price_amount": 900,
        "max_per_order": 1,
        "description": "Members-only tutorials and a monthly expert Q&A. **Renews every month**; cancel at any time "
        "from the link in your emails.",
        "description_zh_hans": "会员专属教程和每月专家答疑。**每月自动续订**，可随时通过邮件中的链接取消。",
    },
    {
        "slug": "code-linter-pro",
        "name": "Code Linter Pro — 2 computers",
        "name_zh_hans": "代码检查专业版 — 两台电脑",
        "kind": FulfilmentKind.LICENSE_KEY,
        "price_amount": 3900,
        "description": "A key made for you at purchase, activated on up to **two computers** (free one from your "
        "order page to move it).",
        "description_zh_hans": "购买时为您生成的密钥，最多可在两台电脑上激活。",
        "redemption_instructions": "Start Code Linter Pro and paste the key; it activates this computer.",
    },
    {
        "slug": "code-linter-pro-yearly",
        "name": "Code Linter Pro — yearly, 14 days free",
        "name_zh_hans": "代码检查专业版 — 按年，免费试用 14 天",
        "kind": FulfilmentKind.LICENSE_KEY,
        "billing_interval": BillingInterval.YEAR,
        "trial_days": 14,
        "price_amount": 2900,
        "max_per_order": 1,
        "description": "Try it **free for 14 days**; then it renews every year and your key keeps working. Cancel at "
        "any time from the link in your emails.",
        "description_zh_hans": "**免费试用 14 天**，之后每年自动续订，密钥持续有效。可随时通过邮件中的链接取消。",
        "redemption_instructions": "Start Code Linter Pro and paste the key; it activates this computer.",
    },
]
MEMBERS_GROUP = "Pro Club members"
DEMO_COUPON = {"code": "WELCOME10", "kind": CouponKind.PERCENT, "percent_off": 10, "max_uses_per_shopper": 1}
# Products whose keys are generated at delivery, checked through the license API (fulfillment.LicensePolicy).
GENERATED_KEYS = {
    "code-linter-pro": {"key_source": KeySource.GENERATED, "activation_limit": 2},
    "code-linter-pro-yearly": {"key_source": KeySource.GENERATED, "activation_limit": 2},
}


class Command(BaseCommand):
    help = "Create the demo catalog (with 50 license keys), a merchant and a risk reviewer login. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=MERCHANT_LOGIN[0])
        parser.add_argument("--password", default=MERCHANT_LOGIN[1])

    @transaction.atomic
    def handle(self, *args, username: str, password: str, **options):
        for spec in DEMO_PRODUCTS:
            if spec["kind"] == FulfilmentKind.MEMBERSHIP:
                spec = {**spec, "membership_group": Group.objects.get_or_create(name=MEMBERS_GROUP)[0]}
            product, created = Product.objects.get_or_create(slug=spec["slug"], defaults=spec)
            if product.slug in GENERATED_KEYS:
                LicensePolicy.objects.get_or_create(product=product, defaults=GENERATED_KEYS[product.slug])
            elif product.kind == FulfilmentKind.LICENSE_KEY:
                keys = [f"DEMO-{product.pk:03d}-{i:04d}-{(i * 7919) % 10000:04d}" for i in range(50)]
                added = keys_add_to_pool(product=product, secrets_=keys, actor="seed_demo")
                self.stdout.write(f"{product.slug}: {added} keys added")
            if product.kind == FulfilmentKind.DOWNLOAD and not product.download_file:
                product.download_file.save("design-templates.zip", ContentFile(b"PK demo archive\n" * 64))
        demo_shop_seed()  # name, logo, announcement, categories, footer pages, pictures, quantity prices
        Coupon.objects.get_or_create(code=DEMO_COUPON["code"], defaults=DEMO_COUPON)  # 10% off, once per shopper
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username=username, defaults={"is_staff": True})
        if created:
            user.is_superuser = True
            user.set_password(password)
            user.save()
        reviewer_name, reviewer_password = REVIEWER_LOGIN
        reviewer, created = user_model.objects.get_or_create(username=reviewer_name, defaults={"is_staff": False})
        if created:
            reviewer.set_password(reviewer_password)
            reviewer.save()
        # the group and its permissions come from migration riskengine/0004
        reviewer.groups.add(Group.objects.get(name=REVIEWERS_GROUP))
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo catalog ready; merchant login {username} / {password}, "
                f"reviewer login {reviewer_name} / {reviewer_password}"
            )
        )
