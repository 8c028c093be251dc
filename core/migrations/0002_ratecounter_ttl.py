"""The rate counters' TTL index: MongoDB's TTL monitor deletes each counter once its
`expires_at` has passed (Django's Index has no TTL option, hence raw pymongo)."""

from django.db import migrations

TTL_INDEX = "core_ratecounter_expires_at_ttl"


def create_ttl_index(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("core", "RateCounter")
    collection = schema_editor.connection.get_collection(model._meta.db_table)
    collection.create_index("expires_at", name=TTL_INDEX, expireAfterSeconds=0)


def drop_ttl_index(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("core", "RateCounter")
    schema_editor.connection.get_collection(model._meta.db_table).drop_index(TTL_INDEX)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_ttl_index, drop_ttl_index),
    ]
