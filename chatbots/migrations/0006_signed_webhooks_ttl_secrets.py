"""The replay guard's TTL index (Django's Index has no TTL option, hence raw pymongo), and a
webhook signing secret for every bot made before they had one (new bots get theirs when
created). Operators see a bot's secret by rotating it (`rotate_webhook_signing_secret`)."""

import base64
import secrets

from django.db import migrations

TTL_INDEX = "chatbots_signedwebhookid_expires_at_ttl"


def create_ttl_index(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("chatbots", "SignedWebhookId")
    collection = schema_editor.connection.get_collection(model._meta.db_table)
    collection.create_index("expires_at", name=TTL_INDEX, expireAfterSeconds=0)


def drop_ttl_index(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("chatbots", "SignedWebhookId")
    schema_editor.connection.get_collection(model._meta.db_table).drop_index(TTL_INDEX)


def give_signing_secrets(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("chatbots", "ChatBot")
    collection = schema_editor.connection.get_collection(model._meta.db_table)
    missing = {"$or": [{"webhook_signing_secret": ""}, {"webhook_signing_secret": {"$exists": False}}]}
    for document in collection.find(missing, {"_id": 1}):
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        collection.update_one({"_id": document["_id"], **missing}, {"$set": {"webhook_signing_secret": secret}})


class Migration(migrations.Migration):
    dependencies = [
        ("chatbots", "0005_signed_webhooks"),
    ]

    operations = [
        migrations.RunPython(create_ttl_index, drop_ttl_index),
        migrations.RunPython(give_signing_secrets, migrations.RunPython.noop),
    ]
