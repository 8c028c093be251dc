import datetime

from django.db import migrations, models


class Migration(migrations.Migration):
    """The "paused" index gains the time of the last message: the dialogues paused until resumed
    (one value of `paused_until`) are then walked most recently active first, a page at a time,
    instead of read whole (dialogues.selectors_lists._paused_places). Added before the old one is
    dropped, so the filter always has an index."""

    dependencies = [
        ('dialogues', '0014_inbox'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='dialogue',
            index=models.Index(
                condition=models.Q(('paused_until__gt', datetime.datetime(2000, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))),
                fields=['paused_until', '-last_message_at'],
                name='dialogue_paused_recent',
            ),
        ),
        migrations.RemoveIndex(
            model_name='dialogue',
            name='dialogue_paused_only',
        ),
    ]
