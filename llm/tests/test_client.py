from __future__ import annotations

import time

import pytest
from django.test import override_settings

from llm.client import LLMError, llm_reply_generate, mock_llm_call


def slow_llm(history):  # type: ignore[no-untyped-def]
    time.sleep(1)
    return "late"


def empty_llm(history):  # type: ignore[no-untyped-def]
    return ""


def upper_llm(history):  # type: ignore[no-untyped-def]
    return history[-1]["text"].upper()


def test_mock_is_deterministic_and_depends_on_the_input() -> None:
    one = [{"role": "USER", "text": "hello"}]
    two = [{"role": "USER", "text": "hello"}, {"role": "ASSISTANT", "text": "hi"}, {"role": "USER", "text": "hello"}]

    assert mock_llm_call(one) == mock_llm_call(list(one))
    assert mock_llm_call(one) != mock_llm_call([{"role": "USER", "text": "bye"}])
    assert mock_llm_call(one) != mock_llm_call(two)
    assert "hello" in mock_llm_call(one)


@override_settings(LLM_MOCK_DELAY_MS=150)
def test_mock_delay_is_simulated() -> None:
    started = time.monotonic()
    llm_reply_generate(history=[{"role": "USER", "text": "hi"}])
    assert time.monotonic() - started >= 0.15


@override_settings(LLM_BACKEND="dialogues.tests.test_llm.upper_llm")
def test_backend_is_chosen_by_dotted_path() -> None:
    assert llm_reply_generate(history=[{"role": "USER", "text": "shout"}]) == "SHOUT"


@override_settings(LLM_BACKEND="dialogues.tests.test_llm.slow_llm", LLM_TIMEOUT_S=0.2)
def test_timeout_is_an_llm_error() -> None:
    started = time.monotonic()
    with pytest.raises(LLMError, match="did not answer"):
        llm_reply_generate(history=[{"role": "USER", "text": "hi"}])
    assert time.monotonic() - started < 0.9


@pytest.mark.parametrize(
    "backend", ["dialogues.tests.test_processing.failing_llm", "dialogues.tests.test_llm.empty_llm", "no.such.module"]
)
def test_backend_failures_are_llm_errors(backend: str) -> None:
    with override_settings(LLM_BACKEND=backend), pytest.raises(LLMError):
        llm_reply_generate(history=[{"role": "USER", "text": "hi"}])
