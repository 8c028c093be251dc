from __future__ import annotations

from core.api import api_router
from dialogues.views import DialogueViewSet

router = api_router()
router.register("dialogues", DialogueViewSet, basename="dialogue")

urlpatterns = router.urls
