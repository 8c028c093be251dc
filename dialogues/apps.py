from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DialoguesConfig(AppConfig):
    name = "dialogues"
    verbose_name = _("Dialogues")

    def ready(self) -> None:
        # The channel kinds' inbound endpoints store their messages through the webhook's ingest.
        from channels_app.kinds.base import history_register, ingest_register
        from dialogues.ingest import kind_history, kind_message_ingest

        ingest_register(kind_message_ingest)
        history_register(kind_history)
