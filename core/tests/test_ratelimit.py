"""Rate limits kept in MongoDB: the counter itself, failed webhook authentications per address,
admin login lockout per address and user name, and API requests per token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from rest_framework.test import APIClient

from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.caching import lookup_caches_clear
from core.models import RateCounter
from core.ratelimit import Rate, client_address, parse_rate, rate_hit, rate_key, rate_peek
from core.tests.factories import api_token_key

pytestmark = pytest.mark.django_db

# The tests' rates use windows of an hour or more, so that a test does not straddle two.

WEBHOOK_URL = "/api/webhook/new_message"


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    lookup_caches_clear()
    yield
    lookup_caches_clear()


# --- the counter ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/minute", Rate(20, 60)),
        ("600/min", Rate(600, 60)),
        ("5/15m", Rate(5, 900)),
        ("5/15minute", Rate(5, 900)),
        ("1/s", Rate(1, 1)),
        ("100/hour", Rate(100, 3600)),
        ("1000/day", Rate(1000, 86400)),
        ("", None),
        ("0", None),
        ("0/minute", None),
    ],
)
def test_parse_rate(text: str, expected: Rate | None) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["20", "x/minute", "20/fortnight", "20/0m", "-1/m"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(text)


def test_hits_count_in_one_document_per_window_and_a_new_window_starts_at_zero() -> None:
    rate = Rate(limit=2, window_s=60)
    key = rate_key("test", "who")
    t0 = 1_800_000_000.0  # a window boundary (divisible by 60)
    assert rate_peek(key, rate, now=t0).count == 0
    assert [rate_hit(key, rate, now=t0 + i).count for i in range(3)] == [1, 2, 3]
    third = rate_hit(key, rate, now=t0 + 50)
    assert third.exceeded
    assert third.retry_after_s == 10
    assert RateCounter.objects.filter(key=key).count() == 1
    # The next window.
    assert rate_peek(key, rate, now=t0 + 60).count == 0
    assert not rate_hit(key, rate, now=t0 + 60).exceeded
    assert RateCounter.objects.filter(key=key).count() == 2
    # Other keys have their own counters.
    assert rate_peek(rate_key("test", "someone else"), rate, now=t0).count == 0


def test_counters_are_unique_per_window_and_expire_by_ttl() -> None:
    from core.ratelimit import _collection

    rate_hit(rate_key("test", "x"), Rate(1, 60))
    indexes = _collection().index_information()
    unique = [spec for spec in indexes.values() if spec.get("unique")]
    assert any(dict(spec["key"]) == {"key": 1, "window": 1} for spec in unique)
    ttl = [spec for spec in indexes.values() if "expireAfterSeconds" in spec]
    assert [dict(spec["key"]) for spec in ttl] == [{"expires_at": 1}]
    document = RateCounter.objects.get()
    assert document.expires_at.timestamp() >= document.window + 60


def test_keys_hold_no_address_and_are_bounded() -> None:
    key = rate_key("login-fail", "203.0.113.9", "x" * 10_000)
    assert "203.0.113.9" not in key
    assert len(key) <= 100


def test_client_address_uses_the_proxy_header_only_when_configured() -> None:
    request = Client().get("/healthz").wsgi_request
    request.META["HTTP_X_REAL_IP"] = "198.51.100.7"
    assert client_address(request) == "127.0.0.1"
    with override_settings(RATE_LIMIT_CLIENT_IP_HEADER="X-Real-IP"):
        assert client_address(request) == "198.51.100.7"


# --- failed webhook authentications per address ----------------------------------------


def _webhook(secret: str, chat_id: str, message_id: str, address: str = "127.0.0.1") -> Any:
    body = {"message_id": message_id, "chat_id": chat_id, "text": "Hi", "message_sender": "employee"}
    return APIClient().post(
        WEBHOOK_URL,
        data=json.dumps(body),
        content_type="application/json",
        headers={"x-chatbot_auth_token": f"Bearer {secret}"},
        REMOTE_ADDR=address,
    )


@override_settings(WEBHOOK_AUTH_FAILURE_RATE="3/hour")
def test_webhook_answers_429_after_too_many_failed_authentications_from_an_address() -> None:
    bot = ChatBotFactory()
    channel = ChannelFactory(chat_bot=bot)
    chat_id = str(channel.pk)
    for i in range(3):
        assert _webhook("cbs_wrong", chat_id, f"bad-{i}").status_code == 401
    blocked = _webhook("cbs_wrong", chat_id, "bad-3")
    assert blocked.status_code == 429
    assert blocked["Content-Type"] == "application/json"
    assert 1 <= int(blocked["Retry-After"]) <= 3600
    assert "detail" in blocked.json()
    # Refused before the secret is checked: even the right one, from that address.
    assert _webhook(bot.plain_secret, chat_id, "good-1").status_code == 429
    # Another address is not affected.
    assert _webhook(bot.plain_secret, chat_id, "good-2", address="192.0.2.10").status_code == 200


@override_settings(WEBHOOK_AUTH_FAILURE_RATE="3/hour")
def test_failures_counted_by_another_process_block_this_one() -> None:
    from core.ratelimit import webhook_auth_failed

    bot = ChatBotFactory()
    chat_id = str(ChannelFactory(chat_bot=bot).pk)
    assert _webhook(bot.plain_secret, chat_id, "m-1").status_code == 200
    # Another process (or host) counts three failures for this address in the database.
    key = rate_key("webhook-auth-fail", "127.0.0.1")
    for _ in range(3):
        rate_hit(key, Rate(3, 3600))
    lookup_caches_clear()  # this process's AUTH_CACHE_TTL_S has passed
    assert _webhook(bot.plain_secret, chat_id, "m-2").status_code == 429
    # And this process's own failures are seen at once, without waiting for the cache.
    other_key = rate_key("webhook-auth-fail", "192.0.2.33")
    assert _webhook(bot.plain_secret, chat_id, "m-3", address="192.0.2.33").status_code == 200
    for _ in range(3):
        webhook_auth_failed(other_key)
    assert _webhook(bot.plain_secret, chat_id, "m-4", address="192.0.2.33").status_code == 429


@override_settings(WEBHOOK_AUTH_FAILURE_RATE="3/hour")
def test_successful_webhook_requests_are_not_counted() -> None:
    bot = ChatBotFactory()
    chat_id = str(ChannelFactory(chat_bot=bot).pk)
    for i in range(5):
        assert _webhook(bot.plain_secret, chat_id, f"m-{i}").status_code == 200
    assert not RateCounter.objects.exists()


@override_settings(WEBHOOK_AUTH_FAILURE_RATE="0")
def test_webhook_failure_limit_can_be_turned_off() -> None:
    chat_id = str(ChannelFactory().pk)
    for i in range(5):
        assert _webhook("cbs_wrong", chat_id, f"bad-{i}").status_code == 401


# --- admin login lockout -----------------------------------------------------------------


def _login(client: Client, username: str, password: str) -> bool:
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    return response.status_code == 302 and "_auth_user_id" in client.session


@override_settings(LOGIN_FAILURE_RATE="3/day")
def test_admin_login_locks_out_an_address_and_user_name_after_repeated_failures() -> None:
    get_user_model().objects.create_user(username="op", password="right-pass-123", is_staff=True)
    attacker = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(3):
        assert not _login(attacker, "op", "wrong")
    # Locked: the right password is refused from this address for this user name.
    assert not _login(attacker, "op", "right-pass-123")
    assert not _login(attacker, "OP", "right-pass-123")  # user names are counted case-blind
    page = attacker.post("/admin/login/", {"username": "op", "password": "right-pass-123"})
    assert page.status_code == 200
    assert "_auth_user_id" not in attacker.session
    # The real user, elsewhere, is not locked out.
    assert _login(Client(REMOTE_ADDR="198.51.100.20"), "op", "right-pass-123")
    # Once the window has passed (its counter gone), the address may sign in again.
    RateCounter.objects.all().delete()
    assert _login(attacker, "op", "right-pass-123")


@override_settings(LOGIN_FAILURE_RATE="3/day")
def test_successful_logins_are_not_counted() -> None:
    get_user_model().objects.create_user(username="op", password="right-pass-123", is_staff=True)
    for _ in range(4):
        assert _login(Client(), "op", "right-pass-123")
    assert not RateCounter.objects.exists()


# --- API requests per token --------------------------------------------------------------


@override_settings(API_RATE="3/hour")
def test_api_answers_429_with_retry_after_once_a_token_used_its_rate() -> None:
    user = get_user_model().objects.create_user(username="api", password="x-pass-123", is_staff=True, is_superuser=True)
    first = APIClient()
    first.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key(user)}")
    for _ in range(3):
        assert first.get("/api/chatbots/").status_code == 200
    throttled = first.get("/api/chatbots/")
    assert throttled.status_code == 429
    assert throttled["Content-Type"] == "application/json"
    assert 1 <= int(throttled["Retry-After"]) <= 3600
    assert "detail" in throttled.json()
    # Another user's token has its own count.
    other_user = get_user_model().objects.create_user(
        username="api2", password="x-pass-123", is_staff=True, is_superuser=True
    )
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key(other_user)}")
    assert other.get("/api/chatbots/").status_code == 200


@override_settings(API_RATE="0")
def test_api_rate_can_be_turned_off(api_client: APIClient) -> None:
    for _ in range(5):
        assert api_client.get("/api/chatbots/").status_code == 200
    assert not RateCounter.objects.exists()
