# Change stamps for the risk engine's per-process snapshot, kept by database triggers.

from django.db import migrations, models

# part -> tables whose writes give it a new stamp
PARTS = {
    "rules": "riskengine_riskrule",
    "lists": "riskengine_listentry",
    "fraud": "riskengine_fraudlabel",
}


def create_triggers(apps, schema_editor):
    Version = apps.get_model("riskengine", "RiskConfigVersion")
    for part in PARTS:
        Version.objects.get_or_create(part=part, defaults={"version": 1})
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        # A sequence, not version + 1: a stamp seen inside a transaction that rolls back is never reused.
        run("CREATE SEQUENCE riskengine_config_stamp")
        for part, table in PARTS.items():
            run(
                f"CREATE FUNCTION riskengine_stamp_{part}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"UPDATE riskengine_riskconfigversion SET version = nextval('riskengine_config_stamp') "
                f"WHERE part = '{part}'; RETURN NULL; END $$"
            )
            run(
                f"CREATE TRIGGER riskengine_stamp_{part} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION riskengine_stamp_{part}()"
            )
    elif schema_editor.connection.vendor == "sqlite":  # the demo database
        for part, table in PARTS.items():
            for event in ("INSERT", "UPDATE", "DELETE"):
                run(
                    f"CREATE TRIGGER riskengine_stamp_{part}_{event.lower()} AFTER {event} ON {table} "
                    f"BEGIN UPDATE riskengine_riskconfigversion SET version = abs(random()) "
                    f"WHERE part = '{part}'; END"
                )
    else:
        raise RuntimeError(f"no change-stamp triggers for the {schema_editor.connection.vendor} database")


def drop_triggers(apps, schema_editor):
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        for part, table in PARTS.items():
            run(f"DROP TRIGGER IF EXISTS riskengine_stamp_{part} ON {table}")
            run(f"DROP FUNCTION IF EXISTS riskengine_stamp_{part}()")
        run("DROP SEQUENCE IF EXISTS riskengine_config_stamp")
    else:
        for part in PARTS:
            for event in ("insert", "update", "delete"):
                run(f"DROP TRIGGER IF EXISTS riskengine_stamp_{part}_{event}")


class Migration(migrations.Migration):

    dependencies = [
        ('riskengine', '0005_risk_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='RiskConfigVersion',
            fields=[
                ('part', models.CharField(max_length=10, primary_key=True, serialize=False)),
                ('version', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
