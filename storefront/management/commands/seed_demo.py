import importlib

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from catalog.models import FulfilmentKind, Product
from fulfillment.keys import keys_add_to_pool
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
]


class Command(BaseCommand):
    help = "Create the demo catalog (with 50 license keys), a merchant and a risk reviewer login. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=MERCHANT_LOGIN[0])
        parser.add_argument("--password", default=MERCHANT_LOGIN[1])

    @transaction.atomic
    def handle(self, *args, username: str, password: str, **options):
        for spec in DEMO_PRODUCTS:
            product, created = Product.objects.get_or_create(slug=spec["slug"], defaults=spec)
            if product.kind == FulfilmentKind.LICENSE_KEY:
                keys = [f"DEMO-{product.pk:03d}-{i:04d}-{(i * 7919) % 10000:04d}" for i in range(50)]
                added = keys_add_to_pool(product=product, secrets_=keys, actor="seed_demo")
                self.stdout.write(f"{product.slug}: {added} keys added")
            if product.kind == FulfilmentKind.DOWNLOAD and not product.download_file:
                product.download_file.save("design-templates.zip", ContentFile(b"PK demo archive\n" * 64))
        demo_shop_seed()  # name, logo, announcement, categories, footer pages, pictures, quantity prices
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
