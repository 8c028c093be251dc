"""The bots' webhook signing secrets stored encrypted (core.crypto, SECRETS_ENCRYPTION_KEYS).
Values already encrypted are left as they are, so the migration can run again; reversed, they are decrypted."""

from django.db import migrations

import core.fields
from core.crypto import is_encrypted, secret_decrypt, secret_encrypt_stored, stored_secrets_rewrite

PATHS = ["webhook_signing_secret", "previous_webhook_signing_secret"]


def _collection(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("chatbots", "ChatBot")
    return schema_editor.connection.get_collection(model._meta.db_table)


def encrypt(apps, schema_editor):  # type: ignore[no-untyped-def]
    stored_secrets_rewrite(_collection(apps, schema_editor), PATHS, secret_encrypt_stored)


def decrypt(apps, schema_editor):  # type: ignore[no-untyped-def]
    stored_secrets_rewrite(
        _collection(apps, schema_editor), PATHS, lambda stored: secret_decrypt(stored) if is_encrypted(stored) else None
    )


class Migration(migrations.Migration):
    dependencies = [
        ("chatbots", "0006_signed_webhooks_ttl_secrets"),
    ]

    operations = [
        migrations.AlterField(
            model_name="chatbot",
            name="previous_webhook_signing_secret",
            field=core.fields.EncryptedCharField(
                blank=True, default="", editable=False, max_length=128, verbose_name="previous webhook signing secret"
            ),
        ),
        migrations.AlterField(
            model_name="chatbot",
            name="webhook_signing_secret",
            field=core.fields.EncryptedCharField(
                blank=True, default="", editable=False, max_length=128, verbose_name="webhook signing secret"
            ),
        ),
        migrations.RunPython(encrypt, decrypt),
    ]
