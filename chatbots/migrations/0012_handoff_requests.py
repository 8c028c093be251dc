from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("chatbots", "0011_unique_names"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatbot",
            name="handoff_keywords",
            field=models.CharField(
                blank=True,
                default="",
                help_text='Comma-separated words or phrases, any language, e.g. "operator, human, оператор, человек".',
                max_length=500,
                verbose_name="hand-off keywords",
            ),
        ),
        migrations.AddField(
            model_name="chatbot",
            name="handoff_tool",
            field=models.BooleanField(
                default=False,
                help_text="Offer the model a handoff_to_human tool (OpenAI-compatible backends).",
                verbose_name="the model may hand off",
            ),
        ),
        migrations.AddField(
            model_name="chatbot",
            name="handoff_text",
            field=models.TextField(
                blank=True,
                default="",
                help_text="Sent to the customer when the bot hands the chat to a human. Blank: a default text.",
                verbose_name="hand-off text",
            ),
        ),
    ]
