from django.db import migrations


def tune_autovacuum(apps, schema_editor):
    # Claims turn pool rows over fast; vacuum the key table eagerly so the partial index stays
    # short (see shared performance notes: throughput halves between default autovacuum runs).
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE fulfillment_licensekey SET (autovacuum_vacuum_threshold = 500, "
        "autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0, "
        "autovacuum_analyze_threshold = 500, autovacuum_analyze_scale_factor = 0.02)"
    )


class Migration(migrations.Migration):
    dependencies = [("fulfillment", "0002_fulfilment_v2")]

    operations = [migrations.RunPython(tune_autovacuum, migrations.RunPython.noop)]
