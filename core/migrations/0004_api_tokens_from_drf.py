"""DRF's tokens (`rest_framework.authtoken`, no longer installed) become API tokens: each key
is hashed into `core_apitoken`, so it keeps working, and the collection that held the keys in
plaintext is dropped. Nothing to do on a database that never had it. Not reversible: the
plaintext keys are gone (and must stay gone)."""

import hashlib
from datetime import UTC, datetime

from django.conf import settings
from django.db import migrations

DRF_COLLECTION = "authtoken_token"


def hash_drf_tokens(apps, schema_editor):  # type: ignore[no-untyped-def]
    database = schema_editor.connection.database
    if DRF_COLLECTION not in database.list_collection_names():
        return
    ApiToken = apps.get_model("core", "ApiToken")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    user_ids = set(User.objects.values_list("pk", flat=True))
    for document in database[DRF_COLLECTION].find():
        # DRF's key is the primary key, stored as `_id` on this backend.
        key = document.get("key") or document.get("_id")
        if not isinstance(key, str) or document.get("user_id") not in user_ids:
            continue
        key_hash = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        if ApiToken.objects.filter(key_hash=key_hash).exists():
            continue
        token = ApiToken.objects.create(
            user_id=document["user_id"], name="DRF token", key_hash=key_hash, prefix=key[:10]
        )
        created = document.get("created")
        if isinstance(created, datetime):
            # pymongo reads dates as naive UTC.
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            ApiToken.objects.filter(pk=token.pk).update(created_at=created)
    database.drop_collection(DRF_COLLECTION)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_api_tokens"),
    ]

    operations = [
        migrations.RunPython(hash_drf_tokens, migrations.RunPython.noop),
    ]
