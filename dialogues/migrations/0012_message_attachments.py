"""A message's attachments (the webhook's `attachments`), embedded in the message.

The field is added to the model's state only. A plain AddField would write its default into
every stored message at deploy time (django-mongodb-backend's `add_field` runs an
`update_many` over the whole collection), rewriting every message and, on the embedded
server, every index entry of each: the largest collection, for a field the old messages do not
need. Messages stored before this read `attachments` as null, which every reader takes for
none; new ones are written with a list (`dialogues.documents.message_document`).
"""

import django_mongodb_backend.fields
from django.db import migrations, models

import dialogues.models


class Migration(migrations.Migration):
    dependencies = [
        ("dialogues", "0011_fewer_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="Attachment",
            fields=[
                (
                    "id",
                    django_mongodb_backend.fields.ObjectIdAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("url", models.CharField(max_length=2048, verbose_name="URL")),
                ("mime_type", models.CharField(blank=True, max_length=127, null=True, verbose_name="type")),
                ("name", models.CharField(blank=True, max_length=255, null=True, verbose_name="name")),
                ("size", models.PositiveBigIntegerField(blank=True, null=True, verbose_name="size (bytes)")),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="message",
                    name="attachments",
                    field=django_mongodb_backend.fields.EmbeddedModelArrayField(
                        blank=True, default=list, editable=False, embedded_model=dialogues.models.Attachment, null=True
                    ),
                ),
            ],
            database_operations=[],
        ),
    ]
