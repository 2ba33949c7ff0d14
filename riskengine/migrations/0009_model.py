# The risk model (riskengine.learning): the features stored with each paid-stage decision, the trained
# versions, and a change stamp "model" for the engine's per-process snapshot (riskengine.config), renewed
# by triggers on every write to the versions, as migration 0006 does for the other parts.

from django.db import migrations, models

TABLE = "riskengine_riskmodel"


def create_trigger(apps, schema_editor):
    Version = apps.get_model("riskengine", "RiskConfigVersion")
    Version.objects.get_or_create(part="model", defaults={"version": 1})
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run(
            "CREATE FUNCTION riskengine_stamp_model() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "UPDATE riskengine_riskconfigversion SET version = nextval('riskengine_config_stamp') "
            "WHERE part = 'model'; RETURN NULL; END $$"
        )
        run(
            f"CREATE TRIGGER riskengine_stamp_model AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION riskengine_stamp_model()"
        )
    elif schema_editor.connection.vendor == "sqlite":  # the demo database
        for event in ("INSERT", "UPDATE", "DELETE"):
            run(
                f"CREATE TRIGGER riskengine_stamp_model_{event.lower()} AFTER {event} ON {TABLE} "
                "BEGIN UPDATE riskengine_riskconfigversion SET version = abs(random()) WHERE part = 'model'; END"
            )
    else:
        raise RuntimeError(f"no change-stamp trigger for the {schema_editor.connection.vendor} database")


def drop_trigger(apps, schema_editor):
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run(f"DROP TRIGGER IF EXISTS riskengine_stamp_model ON {TABLE}")
        run("DROP FUNCTION IF EXISTS riskengine_stamp_model()")
    else:
        for event in ("insert", "update", "delete"):
            run(f"DROP TRIGGER IF EXISTS riskengine_stamp_model_{event}")
    apps.get_model("riskengine", "RiskConfigVersion").objects.filter(part="model").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('riskengine', '0008_rules_v2'),
    ]

    operations = [
        migrations.AddField(
            model_name='riskassessment',
            name='features',
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.CreateModel(
            name='RiskModel',
            fields=[
                ('version', models.AutoField(primary_key=True, serialize=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('created_by', models.CharField(max_length=100)),
                ('algorithm', models.CharField(max_length=100)),
                ('library', models.CharField(help_text='The scikit-learn version that fitted it.', max_length=50)),
                ('feature_names', models.JSONField(default=list)),
                ('parameters', models.JSONField(default=dict, help_text='What scoring reads: scaling, weights, calibration.')),
                ('estimator', models.BinaryField()),
                ('trained_from', models.DateTimeField(help_text='Oldest decision in the training set.')),
                ('trained_to', models.DateTimeField(help_text='Newest decision in the training set.')),
                ('fraud_count', models.PositiveIntegerField()),
                ('good_count', models.PositiveIntegerField()),
                ('metrics', models.JSONField(blank=True, default=dict)),
                ('mode', models.CharField(choices=[('shadow', 'Shadow (recorded, never decides)'), ('active', 'Active (adds its points)'), ('retired', 'Retired')], default='shadow', max_length=10)),
                ('points', models.PositiveSmallIntegerField(default=60, help_text='Risk points the model adds at probability 1.0 (rounded, in proportion below).')),
                ('mode_changed_at', models.DateTimeField(blank=True, null=True)),
                ('mode_changed_by', models.CharField(blank=True, max_length=100)),
            ],
            options={
                'ordering': ['-version'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('mode', 'active')), fields=('mode',), name='riskmodel_one_active'), models.UniqueConstraint(condition=models.Q(('mode', 'shadow')), fields=('mode',), name='riskmodel_one_shadow')],
            },
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
