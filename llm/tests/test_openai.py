"""LLM_BACKEND="openai" against a real local HTTP server speaking the chat-completions protocol
(tests/support/chat_completions.py). The SDK is not patched: these tests assert on what that
server received and on what came back."""

from __future__ import annotations

import logging
import time

import pytest

from chatbots.models import ChatBot
from llm.client import HistoryItem, LLMError, LLMReply, llm_pool, llm_reply_generate
from llm.openai_backend import EMPLOYEE_PREFIX, max_tokens_field
from llm.tests.conftest import API_KEY
from tests.support.chat_completions import ChatCompletionsServer, ChatReply, completion_body, error_body

HI: list[HistoryItem] = [{"role": "USER", "text": "hi"}]


def _fail(chat_bot: ChatBot | None = None) -> LLMError:
    with pytest.raises(LLMError) as caught:
        llm_reply_generate(chat_bot=chat_bot, history=HI)
    assert API_KEY not in caught.value.message
    return caught.value


def test_the_request_carries_the_bots_settings_and_the_conversation_in_order(
    llm_server: ChatCompletionsServer,
) -> None:
    bot = ChatBot(
        name="Shop",
        system_prompt="You are the shop's assistant.",
        llm_model="bot-model",
        temperature=0.3,
        max_output_tokens=77,
    )
    llm_server.then(ChatReply(text="We open at 9.", model="bot-model-2024", prompt_tokens=42, completion_tokens=5))
    history: list[HistoryItem] = [
        {"role": "USER", "text": "Hello"},
        {"role": "ASSISTANT", "text": "Hi! How can I help?"},
        {"role": "EMPLOYEE", "text": "I'm Anna from the shop, I'll check."},
        {"role": "USER", "text": "When do you open?"},
    ]

    reply = llm_reply_generate(chat_bot=bot, history=history)

    (request,) = llm_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.bearer == API_KEY
    body = request.json
    assert body["model"] == "bot-model"
    assert body["messages"] == [
        {"role": "system", "content": "You are the shop's assistant."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "name": "employee", "content": EMPLOYEE_PREFIX + "I'm Anna from the shop, I'll check."},
        {"role": "user", "content": "When do you open?"},
    ]
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 77 and "max_completion_tokens" not in body
    assert body.get("stream") in (None, False)
    assert reply == LLMReply(
        text="We open at 9.",
        backend="openai",
        model="bot-model-2024",  # as the server reports it
        prompt_tokens=42,
        completion_tokens=5,
        latency_ms=reply.latency_ms,
    )
    assert 0 <= reply.latency_ms < 5000


def test_without_a_bot_the_platform_defaults_apply_and_nothing_optional_is_sent(
    llm_server: ChatCompletionsServer,
) -> None:
    reply = llm_reply_generate(chat_bot=None, history=HI)
    body = llm_server.requests[0].json
    assert body["model"] == "platform-model"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert not {"temperature", "max_tokens", "max_completion_tokens"} & set(body)
    assert reply.text == "Fake LLM reply to: hi" and reply.model == "platform-model"


def test_a_bot_with_blank_settings_uses_the_platform_defaults(llm_server: ChatCompletionsServer) -> None:
    llm_reply_generate(chat_bot=ChatBot(name="Plain", system_prompt="   "), history=HI)
    body = llm_server.requests[0].json
    assert body["model"] == "platform-model"
    assert body["messages"] == [{"role": "user", "content": "hi"}]  # a blank prompt is no prompt
    assert "temperature" not in body


def test_temperature_zero_is_sent(llm_server: ChatCompletionsServer) -> None:
    llm_reply_generate(chat_bot=ChatBot(name="Cold", temperature=0.0), history=HI)
    assert llm_server.requests[0].json["temperature"] == 0.0


def test_max_tokens_field_can_be_chosen(llm_server: ChatCompletionsServer, settings) -> None:
    settings.LLM_MAX_TOKENS_FIELD = "max_completion_tokens"
    llm_reply_generate(chat_bot=ChatBot(name="Short", max_output_tokens=12), history=HI)
    body = llm_server.requests[0].json
    assert body["max_completion_tokens"] == 12 and "max_tokens" not in body


def test_auto_max_tokens_field_is_openais_for_openai_only(settings) -> None:
    settings.LLM_MAX_TOKENS_FIELD = "auto"
    assert max_tokens_field("https://api.openai.com/v1") == "max_completion_tokens"
    assert max_tokens_field("http://localhost:11434/v1") == "max_tokens"
    assert max_tokens_field("http://vllm.internal:8000/v1") == "max_tokens"


def test_429_with_retry_after_is_retryable_then_the_next_call_succeeds(llm_server: ChatCompletionsServer) -> None:
    llm_server.then(
        ChatReply(status=429, headers={"Retry-After": "7"}, body=error_body("Rate limit reached", code="rate_limit")),
        ChatReply(text="Now it works"),
    )
    error = _fail()
    assert error.retryable and error.retry_after_s == 7.0
    assert "429" in error.message
    assert len(llm_server.requests) == 1  # the SDK did not retry by itself: retries are the worker's

    assert llm_reply_generate(chat_bot=None, history=HI).text == "Now it works"
    assert len(llm_server.requests) == 2


def test_429_retry_after_ms_is_read_too(llm_server: ChatCompletionsServer) -> None:
    llm_server.then(ChatReply(status=429, headers={"retry-after-ms": "1500"}, body=error_body("slow down")))
    assert _fail().retry_after_s == 1.5


def test_429_unreadable_retry_after_is_no_answer(llm_server: ChatCompletionsServer) -> None:
    """NaN and infinity are not a wait: the worker's own backoff applies, and an unreadable
    retry-after-ms leaves Retry-After to answer."""
    llm_server.then(
        ChatReply(status=429, headers={"Retry-After": "nan"}, body=error_body("slow down")),
        ChatReply(status=429, headers={"retry-after-ms": "inf", "Retry-After": "2"}, body=error_body("slow down")),
    )
    first, second = _fail(), _fail()
    assert first.retryable and first.retry_after_s is None
    assert second.retryable and second.retry_after_s == 2.0


def test_500_is_retryable_and_not_retried_by_the_sdk(llm_server: ChatCompletionsServer) -> None:
    llm_server.then(ChatReply(status=500, body=error_body("The server had an error", type="server_error")))
    error = _fail()
    assert error.retryable and "500" in error.message
    time.sleep(0.1)
    assert len(llm_server.requests) == 1


@pytest.mark.parametrize("status", [502, 503])
def test_gateway_errors_are_retryable(llm_server: ChatCompletionsServer, status: int) -> None:
    llm_server.then(ChatReply(status=status, body=b"<html>bad gateway</html>", content_type="text/html"))
    error = _fail()
    assert error.retryable and str(status) in error.message


def test_a_server_that_does_not_answer_in_time_is_a_retryable_timeout(
    llm_server: ChatCompletionsServer,
    settings,
) -> None:
    settings.LLM_TIMEOUT_S = 0.3
    llm_server.then(ChatReply(delay_s=2.0, text="too late"))
    started = time.monotonic()
    error = _fail()
    elapsed = time.monotonic() - started
    assert error.retryable and "did not answer within 0.3 s" in error.message
    assert elapsed < 0.6, elapsed


def test_malformed_json_is_retryable(llm_server: ChatCompletionsServer) -> None:
    llm_server.then(ChatReply(body=b'{"id": "x", "choices": [{"message": '))
    error = _fail()
    assert error.retryable and "malformed JSON" in error.message


def test_a_non_json_answer_is_retryable(llm_server: ChatCompletionsServer) -> None:
    llm_server.then(ChatReply(body=b"Hello, I am a web page", content_type="text/plain"))
    error = _fail()
    assert error.retryable and "non-JSON" in error.message


def test_empty_choices_are_retryable(llm_server: ChatCompletionsServer) -> None:
    llm_server.then(ChatReply(body=completion_body("unused", model="m", choices=False)))
    error = _fail()
    assert error.retryable and "no choices" in error.message


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_empty_content_is_retryable(llm_server: ChatCompletionsServer, content: str | None) -> None:
    llm_server.then(ChatReply(body=completion_body(content, model="m")))
    error = _fail()
    assert error.retryable and "empty completion" in error.message


def test_401_is_permanent_and_never_repeats_the_key(llm_server: ChatCompletionsServer) -> None:
    # OpenAI's own 401 text quotes part of the key; ours must not pass it on.
    llm_server.then(
        ChatReply(
            status=401,
            body=error_body(f"Incorrect API key provided: {API_KEY}.", code="invalid_api_key"),
        )
    )
    error = _fail()
    assert not error.retryable
    assert error.message == "The LLM server refused the API key (401)"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (404, "Unknown model 'bot-model', or a wrong OPENAI_BASE_URL (404)"),
        (403, "The LLM server denied access to model 'bot-model' (403)"),
        (400, "The LLM server rejected the request (400): temperature is out of range, key [key]"),
        (422, "The LLM server rejected the request (422): temperature is out of range, key [key]"),
    ],
)
def test_client_errors_are_permanent_with_a_clear_reason(
    llm_server: ChatCompletionsServer, status: int, expected: str
) -> None:
    llm_server.then(ChatReply(status=status, body=error_body(f"temperature is out of range, key {API_KEY}")))
    error = _fail(ChatBot(name="x", llm_model="bot-model"))
    assert not error.retryable
    assert error.message == expected


def test_an_unreachable_server_is_retryable(llm_server: ChatCompletionsServer, settings) -> None:
    llm_server.stop()
    error = _fail()
    assert error.retryable
    assert error.message == f"Cannot reach the LLM server at 127.0.0.1:{llm_server.port}"


def test_a_missing_key_is_permanent(llm_server: ChatCompletionsServer, settings) -> None:
    settings.OPENAI_API_KEY = ""
    error = _fail()
    assert not error.retryable and "OPENAI_API_KEY" in error.message
    assert llm_server.requests == []


def test_the_key_appears_in_no_log_line_and_no_error(
    llm_server: ChatCompletionsServer,
    settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "llm"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    settings.LLM_TIMEOUT_S = 0.3
    llm_server.then(
        ChatReply(text="fine"),
        ChatReply(status=429, headers={"Retry-After": "1"}, body=error_body(f"slow down {API_KEY}")),
        ChatReply(status=500, body=error_body(f"boom {API_KEY}")),
        ChatReply(delay_s=1.0),
        ChatReply(body=b"{broken"),
        ChatReply(body=completion_body(None, model="m", choices=False)),
        ChatReply(status=401, body=error_body(f"Incorrect API key provided: {API_KEY}")),
        ChatReply(status=400, body=error_body(f"bad request for {API_KEY}")),
    )
    messages = [llm_reply_generate(chat_bot=None, history=HI).text]
    for _ in range(7):
        with pytest.raises(LLMError) as caught:
            llm_reply_generate(chat_bot=None, history=HI)
        messages.append(caught.value.message)
        messages.append(repr(caught.value))

    # The timed-out call's thread ends (and logs) before the log is read.
    deadline = time.monotonic() + 3
    while llm_pool().abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(llm_server.requests) == 8
    assert all(request.bearer == API_KEY for request in llm_server.requests)  # it was sent...
    # The SDK and its HTTP client did log, at DEBUG, request by request...
    assert "Sending HTTP Request" in caplog.text and "429" in caplog.text
    assert API_KEY not in caplog.text  # ...but never logged
    for record in caplog.records:
        assert API_KEY not in record.getMessage()
        assert API_KEY not in str(record.__dict__)
    assert not [message for message in messages if API_KEY in message]
