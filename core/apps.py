from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "core"
    # In the admin, the app holds the API tokens.
    verbose_name = _("API access")
