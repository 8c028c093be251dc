from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LlmConfig(AppConfig):
    name = "llm"
    verbose_name = _("LLM")

    def ready(self) -> None:
        # `chatbots` sits below this app: it checks a bot's provider through this function.
        from chatbots.services import register_llm_provider_check
        from llm.providers import llm_provider_exists

        register_llm_provider_check(llm_provider_exists)
