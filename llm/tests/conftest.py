from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from tests.support.chat_completions import ChatCompletionsServer

API_KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def llm_server(settings) -> Iterator[ChatCompletionsServer]:
    """A real local chat-completions server, and LLM_BACKEND="openai" pointed at it."""
    server = ChatCompletionsServer().start()
    settings.LLM_BACKEND = "openai"
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = API_KEY
    settings.LLM_MODEL = "platform-model"
    settings.LLM_TIMEOUT_S = 5.0
    settings.LLM_MAX_TOKENS_FIELD = "auto"
    yield server
    server.stop()


@pytest.fixture
def admin_client(client: Client, staff_user) -> Client:
    client.force_login(staff_user)
    return client
