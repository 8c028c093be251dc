from django.db import migrations, models


class Migration(migrations.Migration):
    """Failed and dead replies by dialogue, each state in a partial index of its own: a list
    page counts its dialogues' problem replies without reading their histories
    (dialogues.selectors_rows.dialogue_problem_counts)."""

    dependencies = [
        ('dialogues', '0015_paused_recent_index'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='message',
            index=models.Index(
                condition=models.Q(('delivery_state', 'failed')), fields=['dialogue'], name='message_failed_by_dialogue'
            ),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(
                condition=models.Q(('delivery_state', 'dead')), fields=['dialogue'], name='message_dead_by_dialogue'
            ),
        ),
    ]
