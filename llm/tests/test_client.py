from __future__ import annotations

import time

import pytest
from django.test import override_settings

from chatbots.models import ChatBot
from llm.client import HistoryItem, LLMError, LLMReply, llm_context_size, llm_reply_generate, mock_llm_call

HI: list[HistoryItem] = [{"role": "USER", "text": "hi"}]


def slow_llm(history):
    time.sleep(1)
    return "late"


def empty_llm(history):
    return "  "


def not_text_llm(history):
    return {"text": "hi"}


def upper_llm(history):
    return history[-1]["text"].upper()


def raising_llm(history):
    raise RuntimeError("secret-ish detail from a third-party client")


def refusing_llm(history):
    raise LLMError("quota gone for good", retryable=False)


NOT_CALLABLE = 42


def test_mock_is_deterministic_and_depends_on_the_input() -> None:
    one: list[HistoryItem] = [{"role": "USER", "text": "hello"}]
    two: list[HistoryItem] = [
        {"role": "USER", "text": "hello"},
        {"role": "ASSISTANT", "text": "hi"},
        {"role": "USER", "text": "hello"},
    ]

    assert mock_llm_call(one) == mock_llm_call(list(one))
    assert mock_llm_call(one) != mock_llm_call([{"role": "USER", "text": "bye"}])
    assert mock_llm_call(one) != mock_llm_call(two)
    assert mock_llm_call(one).startswith("Echo (1 in context, ")
    assert mock_llm_call(one).endswith("): hello")


@pytest.mark.parametrize("backend", ["mock", "dialogues.llm.mock_llm_call", "llm.client.mock_llm_call"])
def test_every_name_of_the_mock_selects_it(backend: str) -> None:
    with override_settings(LLM_BACKEND=backend):
        reply = llm_reply_generate(chat_bot=None, history=HI)
    assert reply == LLMReply(
        text=mock_llm_call(HI),
        backend="mock",
        model="",
        prompt_tokens=None,
        completion_tokens=None,
        latency_ms=reply.latency_ms,
    )
    assert reply.latency_ms >= 0


@override_settings(LLM_MOCK_DELAY_MS=150)
def test_mock_delay_is_simulated() -> None:
    started = time.monotonic()
    reply = llm_reply_generate(chat_bot=None, history=HI)
    assert time.monotonic() - started >= 0.15
    assert reply.latency_ms >= 150


@override_settings(LLM_MOCK_DELAY_MS=1000, LLM_TIMEOUT_S=0.2)
def test_a_delayed_mock_is_bounded_by_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(LLMError, match="did not answer within 0.2 s") as caught:
        llm_reply_generate(chat_bot=None, history=HI)
    assert time.monotonic() - started < 0.5
    assert caught.value.retryable


@override_settings(LLM_BACKEND="llm.tests.test_client.upper_llm")
def test_a_custom_backend_is_chosen_by_dotted_path() -> None:
    reply = llm_reply_generate(chat_bot=None, history=[{"role": "USER", "text": "shout"}])
    assert (reply.text, reply.backend, reply.model) == ("SHOUT", "custom", "")
    assert reply.prompt_tokens is None and reply.completion_tokens is None


@override_settings(LLM_BACKEND="llm.tests.test_client.slow_llm", LLM_TIMEOUT_S=0.2)
def test_timeout_is_a_retryable_llm_error() -> None:
    started = time.monotonic()
    with pytest.raises(LLMError, match="did not answer") as caught:
        llm_reply_generate(chat_bot=None, history=HI)
    assert time.monotonic() - started < 0.5
    assert caught.value.retryable and caught.value.retry_after_s is None


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("llm.tests.test_client.raising_llm", "The LLM backend failed: RuntimeError"),
        ("llm.tests.test_client.empty_llm", "The LLM returned an empty or non-text reply"),
        ("llm.tests.test_client.not_text_llm", "The LLM returned an empty or non-text reply"),
    ],
)
def test_backend_failures_are_retryable_llm_errors(backend: str, message: str) -> None:
    with override_settings(LLM_BACKEND=backend), pytest.raises(LLMError) as caught:
        llm_reply_generate(chat_bot=None, history=HI)
    assert caught.value.message == message and caught.value.retryable
    assert "secret-ish" not in caught.value.message  # a third party's text is never passed on


@pytest.mark.parametrize(
    "backend",
    ["no.such.module", "llm.tests.test_client.no_such_function", "nodots", "llm.tests.test_client.NOT_CALLABLE"],
)
def test_a_bad_backend_path_is_a_permanent_llm_error(backend: str) -> None:
    with override_settings(LLM_BACKEND=backend), pytest.raises(LLMError) as caught:
        llm_reply_generate(chat_bot=None, history=HI)
    assert not caught.value.retryable
    assert backend in caught.value.message


@override_settings(LLM_BACKEND="llm.tests.test_client.refusing_llm")
def test_a_backend_may_raise_its_own_llm_error() -> None:
    with pytest.raises(LLMError, match="quota gone for good") as caught:
        llm_reply_generate(chat_bot=None, history=HI)
    assert not caught.value.retryable


@override_settings(LLM_CONTEXT_MESSAGES=17)
def test_context_size_is_the_bots_or_the_platforms() -> None:
    assert llm_context_size(None) == 17
    assert llm_context_size(ChatBot(name="default")) == 17
    assert llm_context_size(ChatBot(name="own", context_messages=3)) == 3


def test_llm_error_carries_what_the_worker_needs() -> None:
    error = LLMError("slow down", retry_after_s=2.5)
    assert (error.message, error.retryable, error.retry_after_s, str(error)) == ("slow down", True, 2.5, "slow down")
