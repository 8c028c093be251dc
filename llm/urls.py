from __future__ import annotations

from core.api import api_router
from llm.views import LLMProviderViewSet

router = api_router()
router.register("llm_providers", LLMProviderViewSet, basename="llm-provider")

urlpatterns = router.urls
