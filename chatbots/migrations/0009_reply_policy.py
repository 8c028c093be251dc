import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chatbots', '0008_llm_provider'),
    ]

    operations = [
        migrations.AddField(
            model_name='chatbot',
            name='reply_policy',
            field=models.CharField(choices=[('each', 'one reply per message'), ('burst', 'one reply per burst of messages')], default='each', help_text='Each: every customer message gets its own reply. Burst: messages written in quick succession get one reply, once the customer stops typing.', max_length=8, verbose_name='reply policy'),
        ),
        migrations.AddField(
            model_name='chatbot',
            name='burst_quiet_ms',
            field=models.PositiveIntegerField(default=1500, help_text='Burst: the reply is made once the chat has been quiet this long, in milliseconds.', validators=[django.core.validators.MinValueValidator(100), django.core.validators.MaxValueValidator(120000)], verbose_name='burst: quiet time (ms)'),
        ),
        migrations.AddField(
            model_name='chatbot',
            name='burst_max_wait_ms',
            field=models.PositiveIntegerField(default=8000, help_text='Burst: the reply is made at the latest this long after the first unanswered message, even if the customer keeps writing, in milliseconds.', validators=[django.core.validators.MinValueValidator(100), django.core.validators.MaxValueValidator(120000)], verbose_name='burst: longest wait (ms)'),
        ),
    ]
