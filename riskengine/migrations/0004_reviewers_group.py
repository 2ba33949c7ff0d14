"""The 'Risk reviewers' group: works the review queue (/review/), sees nothing of the catalog admin.

Its members are not staff, so the Django admin refuses them; the queue checks riskengine.review_orders.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

REVIEWERS_GROUP = "Risk reviewers"
REVIEWER_PERMISSIONS = ["review_orders", "view_riskassessment"]


def create_reviewers_group(apps, schema_editor):
    # Permissions are normally created after migrate (post_migrate); on a fresh database they do not exist yet.
    app_config = apps.get_app_config("riskengine")
    had_models_module = getattr(app_config, "models_module", None)
    app_config.models_module = had_models_module or True
    create_permissions(app_config, verbosity=0, apps=apps)
    app_config.models_module = had_models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="riskengine", codename__in=REVIEWER_PERMISSIONS)
    )


def remove_reviewers_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=REVIEWERS_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("riskengine", "0003_default_rules"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewers_group, remove_reviewers_group)]
