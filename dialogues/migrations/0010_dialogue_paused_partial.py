import datetime

from django.db import migrations, models


class Migration(migrations.Migration):
    """The "paused" index holds only dialogues with a pause date (dialogues.models.PAUSE_INDEX_FROM):
    every other dialogue's updates never write it."""

    dependencies = [
        ('dialogues', '0009_admin_list_indexes'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='dialogue',
            name='dialogue_paused',
        ),
        migrations.AddIndex(
            model_name='dialogue',
            index=models.Index(
                condition=models.Q(('paused_until__gt', datetime.datetime(2000, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))),
                fields=['paused_until'],
                name='dialogue_paused_only',
            ),
        ),
    ]
