from __future__ import annotations

from channels_app.views import ChannelViewSet
from core.api import api_router

router = api_router()
router.register("channels", ChannelViewSet, basename="channel")

urlpatterns = router.urls
