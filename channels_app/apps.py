from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = _("Channels")

    def ready(self) -> None:
        # Every kind is imported once, at start: a broken kind fails the start, not a delivery,
        # and no worker thread pays for an import in the middle of an attempt.
        from channels_app.kinds import kinds_all

        kinds_all()
