import django.db.models
from django.db import migrations

import core.fields


class Migration(migrations.Migration):

    dependencies = [
        ('channels_app', '0006_typing_events'),
    ]

    operations = [
        migrations.AddField(
            model_name='channel',
            name='kind',
            field=django.db.models.CharField(default='webhook', editable=False, max_length=32, verbose_name='kind'),
        ),
        migrations.AddField(
            model_name='channel',
            name='kind_options',
            field=django.db.models.JSONField(blank=True, default=dict, editable=False, verbose_name='kind options'),
        ),
        migrations.AddField(
            model_name='channel',
            name='kind_secret',
            field=core.fields.EncryptedCharField(blank=True, default='', editable=False, max_length=256, verbose_name='kind secret'),
        ),
    ]
