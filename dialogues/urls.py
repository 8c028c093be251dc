from __future__ import annotations

from django.urls import re_path

from core.api import api_router
from dialogues.views import ChannelDialogueView
from dialogues.views_operators import DialogueHandoffViewSet

router = api_router()
# The dialogues' reads, with the hand-off (pause, resume, operators' messages).
router.register("dialogues", DialogueHandoffViewSet, basename="dialogue")

urlpatterns = [
    # The existing contract's channel history, with or without the trailing slash.
    re_path(r"^channels/(?P<pk>[^/]+)/dialogue/?$", ChannelDialogueView.as_view(), name="channel-dialogue"),
    *router.urls,
]
