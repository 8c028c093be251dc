from __future__ import annotations

from django.contrib.admin import AdminSite
from django.utils.translation import gettext_lazy as _


class PlatformAdminSite(AdminSite):
    site_header = _("Chat-bot platform")
    site_title = _("Chat-bot platform admin")
    index_title = _("Operations")
    # The app has no public site to link to: "/" is the API's JSON 404.
    site_url = None
