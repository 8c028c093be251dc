"""W3C Trace Context: a `traceparent` on the webhook is kept with the message, continued by its
reply (the LLM call and the POST to the channel carry it), and its trace id is on every log line
of that work. A malformed one is ignored, never a 4xx."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

import pytest
from django.test import override_settings

from chatbots.models import ChatBot
from config.logging import TEXT_FORMAT, JsonFormatter, RequestIdFilter, TextFormatter
from core.tracing import (
    TRACESTATE_MAX_LENGTH,
    TraceContext,
    trace_bound,
    trace_from_headers,
    traceparent_parse,
    tracestate_clean,
)
from devtools.receiver import ChannelReceiver, Reply
from dialogues.models import Message
from dialogues.tests.conftest import customer_message
from tests.support.chat_completions import ChatCompletionsServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"

MALFORMED = [
    "",
    "garbage",
    f"01-{TRACE_ID}-{PARENT_ID}-01",  # only version 00
    f"ff-{TRACE_ID}-{PARENT_ID}-01",
    f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # lowercase hex only
    f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{PARENT_ID}-1",
    f"00-{TRACE_ID}-{PARENT_ID}-0g",
    f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
    f"00_{TRACE_ID}_{PARENT_ID}_01",
    f"{TRACEPARENT},{TRACEPARENT}",  # two headers, joined by the server
    f"00-{TRACE_ID}-{PARENT_ID}-01\r\nx-forged: 1",
]

Drain = Callable[[], None]


def _parts(traceparent: str) -> tuple[str, str, str, str]:
    parsed = traceparent_parse(traceparent)
    assert parsed is not None, traceparent
    version, trace_id, span_id, flags = traceparent.split("-")
    return version, trace_id, span_id, flags


def _headers(bot: ChatBot, **extra: str) -> dict[str, str]:
    return {"x-chatbot_auth_token": f"Bearer {bot.plain_secret}", **extra}


# --- Parsing ---------------------------------------------------------------------------------


def test_a_valid_traceparent_is_parsed() -> None:
    parsed = traceparent_parse(f" {TRACEPARENT}\t", tracestate=TRACESTATE)
    assert parsed == TraceContext(trace_id=TRACE_ID, span_id=PARENT_ID, flags="01", tracestate=TRACESTATE)
    assert parsed.traceparent == TRACEPARENT


@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_traceparent_is_not_one(value: str) -> None:
    assert traceparent_parse(value, tracestate=TRACESTATE) is None


def test_flags_other_than_sampled_are_not_passed_on() -> None:
    parsed = traceparent_parse(f"00-{TRACE_ID}-{PARENT_ID}-ff")
    assert parsed is not None and parsed.flags == "01"
    parsed = traceparent_parse(f"00-{TRACE_ID}-{PARENT_ID}-02")
    assert parsed is not None and parsed.flags == "00"


def test_tracestate_is_kept_when_well_formed_and_bounded() -> None:
    assert tracestate_clean(None) == ""
    assert tracestate_clean(TRACESTATE) == TRACESTATE
    assert tracestate_clean(" congo=t61rcWkgMzE ,, rojo=1 ") == "congo=t61rcWkgMzE,rojo=1"
    assert tracestate_clean("tenant@vendor=x") == "tenant@vendor=x"
    # Malformed members or repeated keys: nothing is passed on.
    assert tracestate_clean("congo=t61,Bad=1") == ""
    assert tracestate_clean("congo=t61,no-value") == ""
    assert tracestate_clean("congo=a,congo=b") == ""
    assert tracestate_clean("congo=a\r\nx=1") == ""
    # Too long: whole members dropped from the end.
    long_state = ",".join(f"k{i}={'v' * 40}" for i in range(30))
    kept = tracestate_clean(long_state)
    assert len(kept) <= TRACESTATE_MAX_LENGTH and long_state.startswith(kept) and kept.endswith("v" * 40)
    assert len(tracestate_clean(",".join(f"k{i}=v" for i in range(40))).split(",")) == 32


def test_a_request_continues_the_callers_trace_in_a_new_span_or_starts_one() -> None:
    continued = trace_from_headers(TRACEPARENT, TRACESTATE)
    assert continued.trace_id == TRACE_ID and continued.span_id != PARENT_ID
    assert continued.tracestate == TRACESTATE and continued.flags == "01"
    fresh = trace_from_headers("garbage", TRACESTATE)
    assert fresh.trace_id != TRACE_ID and fresh.tracestate == ""  # no tracestate without a parent
    assert traceparent_parse(fresh.traceparent) is not None
    assert trace_from_headers(None, None).trace_id != fresh.trace_id


# --- The webhook ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_stores_the_incoming_trace_and_answers_it(bot, channel, post_webhook) -> None:
    response = post_webhook(
        customer_message(channel), headers=_headers(bot, traceparent=TRACEPARENT, tracestate=TRACESTATE)
    )
    assert response.status_code == 200
    version, trace_id, span_id, flags = _parts(response["traceparent"])
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id != PARENT_ID  # the webhook's own span, a child of the caller's
    message = Message.objects.get(message_id="m-1")
    assert message.traceparent == response["traceparent"]
    assert message.tracestate == TRACESTATE


@pytest.mark.django_db
@pytest.mark.parametrize("value", MALFORMED)
def test_a_malformed_traceparent_is_replaced_by_a_new_trace_not_refused(bot, channel, post_webhook, value) -> None:
    response = post_webhook(customer_message(channel), headers=_headers(bot, traceparent=value, tracestate=TRACESTATE))
    assert response.status_code == 200
    _version, trace_id, _span_id, _flags = _parts(response["traceparent"])
    assert trace_id != TRACE_ID
    message = Message.objects.get(message_id="m-1")
    assert message.traceparent == response["traceparent"]
    assert message.tracestate == ""


@pytest.mark.django_db
def test_every_message_gets_a_trace_and_every_answer_a_traceparent(bot, channel, post_webhook) -> None:
    first = post_webhook(customer_message(channel, message_id="m-1"))
    second = post_webhook(customer_message(channel, message_id="m-2", message_sender="employee"))
    refused = post_webhook(customer_message(channel), headers={"x-chatbot_auth_token": "Bearer wrong"})
    assert first.status_code == second.status_code == 200 and refused.status_code == 401
    traces = {_parts(response["traceparent"])[1] for response in (first, second, refused)}
    assert len(traces) == 3
    stored = dict(Message.objects.values_list("message_id", "traceparent"))
    assert stored == {"m-1": first["traceparent"], "m-2": second["traceparent"]}


# --- The worker -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_reply_and_its_delivery_continue_the_trace(
    bot, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    post_webhook(customer_message(channel), headers=_headers(bot, traceparent=TRACEPARENT, tracestate=TRACESTATE))
    drain()

    user = Message.objects.get(role=Message.Role.USER)
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.delivery_state == "delivered"
    _, reply_trace, reply_span, _ = _parts(reply.traceparent)
    assert reply_trace == TRACE_ID and reply_span not in (PARENT_ID, _parts(user.traceparent)[2])
    assert reply.tracestate == TRACESTATE

    [request] = receiver.requests
    _, sent_trace, sent_span, sent_flags = _parts(request.headers["traceparent"])
    assert (sent_trace, sent_flags) == (TRACE_ID, "01")
    assert sent_span not in (PARENT_ID, reply_span)
    assert request.headers["tracestate"] == TRACESTATE
    # The trace headers are added to, never in place of, the channel's own.
    assert request.headers["x-chat_auth_token"] == f"Bearer {channel.settings.token}"
    assert request.headers["webhook-id"] == reply.message_id


@pytest.mark.django_db
@override_settings(DELIVERY_RETRY_BASE_S=0.01, DELIVERY_RETRY_MAX_S=0.01)
def test_each_delivery_attempt_is_a_new_span_of_the_same_trace(
    bot, channel, post_webhook, receiver: ChannelReceiver, drain: Drain
) -> None:
    receiver.then(Reply(status=500))
    post_webhook(customer_message(channel), headers=_headers(bot, traceparent=TRACEPARENT))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not Message.objects.filter(delivery_state="delivered").exists():
        drain()
        time.sleep(0.02)
    first, second = receiver.requests
    assert _parts(first.headers["traceparent"])[1] == _parts(second.headers["traceparent"])[1] == TRACE_ID
    assert _parts(first.headers["traceparent"])[2] != _parts(second.headers["traceparent"])[2]
    assert "tracestate" not in first.headers  # none came in


@pytest.fixture
def llm_server(settings) -> Iterator[ChatCompletionsServer]:
    server = ChatCompletionsServer().start()
    settings.LLM_BACKEND = "openai"
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "sk-test-0123456789abcdef"
    settings.LLM_MODEL = "platform-model"
    settings.LLM_TIMEOUT_S = 5.0
    yield server
    server.stop()


@pytest.mark.django_db
def test_the_llm_call_carries_the_trace(
    bot, channel, post_webhook, receiver: ChannelReceiver, llm_server: ChatCompletionsServer, drain: Drain
) -> None:
    post_webhook(customer_message(channel), headers=_headers(bot, traceparent=TRACEPARENT, tracestate=TRACESTATE))
    drain()

    [call] = llm_server.requests
    _, trace_id, span_id, _ = _parts(call.headers["traceparent"])
    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.llm_backend == "openai" and reply.delivery_state == "delivered"
    assert trace_id == TRACE_ID and span_id not in (PARENT_ID, _parts(reply.traceparent)[2])
    # The channel's vendors' tracestate is not handed to the LLM's.
    assert "tracestate" not in call.headers


# --- Logs -------------------------------------------------------------------------------------


@pytest.fixture
def traced_caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    # The filter production's handler has (config.logging), on the capturing handler.
    log_filter = RequestIdFilter()
    caplog.handler.addFilter(log_filter)
    caplog.set_level(logging.DEBUG)
    yield caplog
    caplog.handler.removeFilter(log_filter)


@pytest.mark.django_db
def test_log_lines_of_the_work_carry_the_trace_id(
    bot,
    channel,
    post_webhook,
    receiver: ChannelReceiver,
    llm_server: ChatCompletionsServer,
    drain: Drain,
    traced_caplog: pytest.LogCaptureFixture,
) -> None:
    post_webhook(customer_message(channel), headers=_headers(bot, traceparent=TRACEPARENT))
    drain()

    def trace_of(logger: str, message: str) -> list[str]:
        return [
            getattr(r, "trace_id", None)
            for r in traced_caplog.records
            if r.name == logger and r.getMessage() == message
        ]

    assert trace_of("dialogues.webhook", "webhook") == [TRACE_ID]
    # In the LLM pool's own thread, and in the worker's.
    assert trace_of("llm", "llm reply") == [TRACE_ID]
    assert trace_of("channels_app.dispatch", "delivery attempt") == [TRACE_ID]
    # Outside that work, no trace.
    logging.getLogger("t").info("after")
    assert trace_of("t", "after") == ["-"]


def test_both_log_formats_carry_the_trace_id() -> None:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "hello"})
    with trace_bound(trace_from_headers(TRACEPARENT, None)):
        RequestIdFilter().filter(record)
    assert f"[-] [{TRACE_ID}] t: hello" in TextFormatter(TEXT_FORMAT).format(record)
    data = json.loads(JsonFormatter().format(record))
    assert data["trace_id"] == TRACE_ID and data["request_id"] == "-"
    assert f"trace_id={TRACE_ID}" not in TextFormatter(TEXT_FORMAT).format(record)  # not an extra too
