import django.db.models.deletion
import django_mongodb_backend.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chatbots", "0012_handoff_requests"),
    ]

    operations = [
        migrations.CreateModel(
            name="CannedReply",
            fields=[
                ("id", django_mongodb_backend.fields.ObjectIdAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("shortcut", models.SlugField(allow_unicode=True, help_text="Typed after / in the reply box, e.g. refund.", max_length=40, verbose_name="shortcut")),
                ("text", models.TextField(max_length=4000, verbose_name="text")),
                ("chat_bot", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="canned_replies", to="chatbots.chatbot", verbose_name="chat bot")),
            ],
            options={
                "verbose_name": "canned reply",
                "verbose_name_plural": "canned replies",
                "ordering": ["shortcut"],
                "constraints": [models.UniqueConstraint(fields=("chat_bot", "shortcut"), name="uniq_canned_shortcut")],
                "indexes": [models.Index(fields=["chat_bot", "shortcut"], name="canned_bot_shortcut")],
            },
        ),
    ]
