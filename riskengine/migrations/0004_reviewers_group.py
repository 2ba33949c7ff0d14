"""The 'Risk reviewers' group: works the review queue (/review/), sees nothing of the catalog admin.

Its members are not staff, so the Django admin refuses them; the queue checks riskengine.review_orders.
"""

from django.db import migrations

REVIEWERS_GROUP = "Risk reviewers"
# (model, codename, name): created here because post_migrate has not made them yet on a fresh database.
REVIEWER_PERMISSIONS = [
    ("reviewcase", "review_orders", "Can work the risk review queue"),
    ("riskassessment", "view_riskassessment", "Can view risk assessment"),
]


def create_reviewers_group(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    group, _ = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    for model, codename, name in REVIEWER_PERMISSIONS:
        content_type, _ = ContentType.objects.get_or_create(app_label="riskengine", model=model)
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
        group.permissions.add(permission)


def remove_reviewers_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=REVIEWERS_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("riskengine", "0003_default_rules"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewers_group, remove_reviewers_group)]
