from __future__ import annotations

from chatbots.views import ChatBotViewSet
from core.api import api_router

router = api_router()
router.register("chatbots", ChatBotViewSet, basename="chatbot")

urlpatterns = router.urls
