from __future__ import annotations

from django.urls import path

from dialogues.webhook.views import WebhookNewMessageView

urlpatterns = [
    path("new_message", WebhookNewMessageView.as_view(), name="webhook-new-message"),
]
