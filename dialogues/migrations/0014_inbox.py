import datetime

import django_mongodb_backend.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dialogues", "0013_handoff_requests"),
    ]

    operations = [
        migrations.AddField(
            model_name="dialogue",
            name="attention_at",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="needs a human since"),
        ),
        migrations.AddField(
            model_name="dialogue",
            name="attention_reasons",
            field=django_mongodb_backend.fields.ArrayField(
                base_field=models.CharField(max_length=32), blank=True, editable=False, null=True, size=None, verbose_name="why"
            ),
        ),
        migrations.AddField(
            model_name="dialogue",
            name="assignee_id",
            field=django_mongodb_backend.fields.ObjectIdField(blank=True, editable=False, null=True, verbose_name="assigned to"),
        ),
        migrations.AddField(
            model_name="dialogue",
            name="assignee_name",
            field=models.CharField(blank=True, default="", editable=False, max_length=150, verbose_name="assigned to"),
        ),
        migrations.AddField(
            model_name="dialogue",
            name="seen_seq",
            field=models.PositiveBigIntegerField(default=0, editable=False, verbose_name="seen up to"),
        ),
        migrations.AlterField(
            model_name="message",
            name="role",
            field=models.CharField(
                choices=[
                    ("ASSISTANT", "bot reply"),
                    ("SYSTEM", "system"),
                    ("USER", "customer"),
                    ("EMPLOYEE", "employee"),
                    ("NOTE", "note"),
                ],
                max_length=16,
                verbose_name="role",
            ),
        ),
        migrations.AddIndex(
            model_name="dialogue",
            index=models.Index(
                condition=models.Q(("attention_at__gt", datetime.datetime(2000, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))),
                fields=["attention_at"],
                name="dialogue_attention",
            ),
        ),
    ]
