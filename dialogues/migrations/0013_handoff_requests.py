from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dialogues", "0012_message_attachments"),
    ]

    operations = [
        migrations.AddField(
            model_name="dialogue",
            name="handoff_reason",
            field=models.CharField(blank=True, default="", editable=False, max_length=500, verbose_name="hand-off reason"),
        ),
        migrations.AddField(
            model_name="dialogue",
            name="handoff_requested_at",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="hand-off asked for"),
        ),
    ]
