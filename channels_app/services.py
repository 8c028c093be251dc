from __future__ import annotations

import ipaddress
import socket
import threading
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from bson import ObjectId
from django.conf import settings
from django.utils import timezone

from channels_app.breaker import CLOSED, breaker_closed
from channels_app.kinds.base import KindConfig
from channels_app.models import URL_MAX_LENGTH, Channel, ChannelSettings
from chatbots.models import ChatBot
from core.errors import ApplicationError, Conflict, NotFound
from core.fields import encrypted_compare_and_set
from core.mongo import mongo_collection
from core.tokens import (
    generate_channel_token,
    generate_signing_secret,
    signing_secret_rotation,
    signing_secrets_current,
)
from core.worker_wake import HOUSEKEEPING, worker_wake


def validate_channel_url(url: str) -> str:
    """An absolute http(s) URL of at most 2,048 characters, with no control characters."""
    if not isinstance(url, str) or not url:
        raise ApplicationError("url is required")
    if len(url) > URL_MAX_LENGTH:
        raise ApplicationError(f"url must be at most {URL_MAX_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise ApplicationError("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # an unbalanced "[" in the host, a port that is not a number
        raise ApplicationError("url must be an absolute http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ApplicationError("url must be an absolute http:// or https:// URL")
    return url


# --- Which addresses a channel URL may reach (SSRF) -------------------------------------------
#
# Only globally routable addresses. `ipaddress`'s `is_global` alone is not enough: Python
# versions disagree on several special-purpose ranges (3.12.1 calls 192.0.0.8, fec0::1 and the
# 6to4 address 2002:7f00:1::, which embeds 127.0.0.1, global; 3.13 still calls fec0::1 and the
# IPv4-compatible ::7f00:1 global), so the IANA special-purpose registries are listed here too.
# https://www.iana.org/assignments/iana-ipv4-special-registry
# https://www.iana.org/assignments/iana-ipv6-special-registry

_REFUSED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT; 100.100.100.200 is a cloud metadata address
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, incl. the 169.254.169.254 metadata address
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.31.196.0/24",  # AS112-v4
        "192.52.193.0/24",  # AMT
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # private
        "192.175.48.0/24",  # AS112 direct delegation
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved
        "255.255.255.255/32",  # limited broadcast
    )
)
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible ::a.b.c.d
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: reaches whatever IPv4 address it embeds, through a relay
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs (RFC 9602)
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
# IPv6 addresses that stand for an IPv4 address: judged by that address, since it is what the
# connection reaches. Both may come from an ordinary DNS answer (NAT64/DNS64 networks).
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _ip_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _IPV4_MAPPED or ip in _NAT64:
            return _ip_is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        refused: tuple[ipaddress.IPv4Network, ...] | tuple[ipaddress.IPv6Network, ...] = _REFUSED_V6
    else:
        refused = _REFUSED_V4
    return ip.is_global and not any(ip in net for net in refused)


def is_public_address(address: str) -> bool:
    """True for a globally routable IP address. Raises ValueError for anything else than an
    IP address (an IPv6 zone, `%eth0`, is ignored)."""
    return _ip_is_public(ipaddress.ip_address(address.split("%", 1)[0]))


def url_targets_non_public_address(url: str) -> bool:
    """True when the URL's host is, or resolves to, an address that is not globally routable
    (any one of its addresses is enough). Unresolvable hosts count as public: delivery to them
    fails on its own, and the address connected to is checked again at delivery. Numeric
    forms such as `2130706433` or `0x7f.1` are left to the resolver, which reads them as the
    system's HTTP client would."""
    host = urlsplit(url).hostname or ""
    try:
        return not is_public_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return any(not is_public_address(str(info[4][0])) for info in infos)


NON_PUBLIC_URL_REFUSED = (
    "url points into a private network (a loopback, private, link-local or other non-public address); "
    "set CHANNEL_ALLOW_PRIVATE_URLS=true to allow it"
)


def channel_url_check(url: str) -> str:
    """The rule for a channel's URL, for every way of saving one: an absolute http(s) URL
    (`validate_channel_url`) whose host is a public address, unless CHANNEL_ALLOW_PRIVATE_URLS.
    A URL that reaches into our own network would let whoever sets it probe that network
    (SSRF). Returns the URL; raises ApplicationError."""
    url = validate_channel_url(url)
    if not settings.CHANNEL_ALLOW_PRIVATE_URLS and url_targets_non_public_address(url):
        raise ApplicationError(NON_PUBLIC_URL_REFUSED)
    return url


def channel_create(
    *, chat_bot: ChatBot, name: str, url: str, is_active: bool = True, typing_events: bool = False
) -> Channel:
    url = channel_url_check(url)
    return Channel.objects.create(
        chat_bot=chat_bot,
        name=name,
        settings=ChannelSettings(url=url, token=generate_channel_token()),
        is_active=is_active,
        typing_events=typing_events,
        signing_secret=generate_signing_secret(),
    )


def channel_create_of_kind(
    *, chat_bot: ChatBot, name: str, kind: str, config: KindConfig, is_active: bool = True, typing_events: bool = True
) -> Channel:
    """A channel of a native kind, as its package configured it (`ChannelKind.configure`).
    Typing is on by default: the kind shows it the service's way, or has none."""
    return Channel.objects.create(
        chat_bot=chat_bot,
        name=name,
        kind=kind,
        typing_events=typing_events,
        settings=ChannelSettings(url=config.url, token=config.token or generate_channel_token()),
        kind_options=config.options,
        kind_secret=config.secret,
        is_active=is_active,
    )


def channel_kind_update(
    *, channel: Channel, name: str, is_active: bool, config: KindConfig, typing_events: bool | None = None
) -> Channel:
    """A native kind's channel changed in its form: its kind stays; a blank token or secret in
    `config` keeps the stored one."""
    channel.name = name
    channel.is_active = is_active
    if typing_events is not None:
        channel.typing_events = typing_events
    channel.settings.url = config.url
    if config.token:
        channel.settings.token = config.token
    if config.secret:
        channel.kind_secret = config.secret
    channel.kind_options = config.options
    channel.save(
        update_fields=["name", "is_active", "typing_events", "settings", "kind_options", "kind_secret", "updated_at"]
    )
    if is_active:
        worker_wake(HOUSEKEEPING)
    return channel


def channel_update(
    *,
    channel: Channel,
    name: str | None = None,
    url: str | None = None,
    is_active: bool | None = None,
    typing_events: bool | None = None,
) -> Channel:
    fields = ["updated_at"]
    if name is not None:
        channel.name = name
        fields.append("name")
    if url is not None:
        channel.settings.url = channel_url_check(url)
        fields.append("settings")
    if is_active is not None:
        channel.is_active = is_active
        fields.append("is_active")
    if typing_events is not None:
        channel.typing_events = typing_events
        fields.append("typing_events")
    channel.save(update_fields=fields)
    if is_active:
        worker_wake(HOUSEKEEPING)  # its parked dialogues are resumed by the worker's housekeeping
    return channel


def channel_rotate_token(*, channel: Channel) -> str:
    token = generate_channel_token()
    channel.settings.token = token
    channel.save(update_fields=["settings", "updated_at"])
    return token


# --- Signing secrets (Standard Webhooks) -------------------------------------------------------


def channel_signing_secrets(*, channel: Channel, now: datetime | None = None) -> list[str]:
    """The secrets a reply to this channel is signed with now: the current one and, during a
    rotation's overlap, the previous one. Empty only for a channel that has none yet."""
    return signing_secrets_current(
        current=channel.signing_secret,
        previous=channel.previous_signing_secret,
        previous_until=channel.previous_signing_secret_until,
        now=now or timezone.now(),
    )


def channel_signing_secret_rotate(
    *, channel: Channel, overlap_s: float | None = None, now: datetime | None = None
) -> str:
    """Gives the channel a new signing secret and returns it (the only time it is shown).
    For `overlap_s` (default CHANNEL_SIGNING_OVERLAP_S) replies are signed with the old secret
    too; 0 drops it at once. Rotating again within an overlap keeps only the latest old one."""
    if overlap_s is None:
        overlap_s = settings.CHANNEL_SIGNING_OVERLAP_S
    old = channel.signing_secret
    new, values = signing_secret_rotation(
        field="signing_secret", old=old, overlap_s=overlap_s, now=now or timezone.now()
    )
    # Compare-and-set on the secret it replaces: of two rotations at the same moment one
    # wins, and the other is told so, rather than showing a secret that was overwritten.
    updated = encrypted_compare_and_set(
        model=Channel, pk=channel.pk, field="signing_secret", expected=old, values=values
    )
    if not updated:
        if not Channel.objects.filter(pk=channel.pk).exists():
            raise NotFound("Not found.")
        raise Conflict("The signing secret was rotated at the same time by another request; try again")
    for field, value in values.items():
        setattr(channel, field, value)
    return new


def channel_set_active(*, channel: Channel, is_active: bool) -> Channel:
    return channel_update(channel=channel, is_active=is_active)


def channel_test_request(*, channel_ids: list[Any]) -> int:
    """Asks the worker to send each of these channels a marked test message (at once when a
    worker runs on this host, else at its next housekeeping); the result lands in the channel's
    `last_test_*` fields. Returns how many were asked."""
    if not channel_ids:
        return 0
    result = mongo_collection(Channel._meta.db_table).update_many(
        {"_id": {"$in": channel_ids}}, {"$set": {"test_requested_at": timezone.now()}}
    )
    worker_wake(HOUSEKEEPING)
    return int(result.matched_count)


def channel_breaker_close(*, channel: Channel) -> bool:
    """An operator closes the channel's circuit breaker (they know it is back): attempts go to
    it again at once, and the worker retries what it is owed now (within a second) rather
    than at the end of each reply's backoff (at the worker's next housekeeping). False when it
    was closed already."""
    result = mongo_collection(Channel._meta.db_table).update_one(
        {"_id": channel.pk},
        {
            "$set": {
                **CLOSED,
                # Taken by the worker (`channel_owed_wake_requests_take`).
                "owed_wake_requested_at": timezone.now(),
            }
        },
    )
    if result.matched_count != 1:
        raise NotFound("Not found.")
    worker_wake(HOUSEKEEPING)
    was_open = channel.breaker_open_until is not None and channel.consecutive_failures > 0
    channel.consecutive_failures = 0
    channel.breaker_open_until = None
    return was_open


def channel_owed_wake_requests_take() -> list[ObjectId]:
    """The channels whose breaker an operator closed (`channel_breaker_close`) since the last
    look: each request is taken by one caller (the worker, which retries what they are owed)."""
    return _requests_take("owed_wake_requested_at", limit=None)


def channel_test_requests_take(*, limit: int = 100) -> list[ObjectId]:
    """The channels a test message was asked for (`channel_test_request`): each request is
    taken by one caller (the worker, which sends it, `channel_test_send`). Taking it marks the
    test as being sent (`test_sending_at`, until its result is written), so that the admin's
    list shows it on its way from the request to the result, with no gap in between."""
    return _requests_take("test_requested_at", limit=limit, on_take={"test_sending_at": timezone.now()})


def _requests_take(request_field: str, *, limit: int | None, on_take: dict[str, Any] | None = None) -> list[ObjectId]:
    channels = mongo_collection(Channel._meta.db_table)
    found = channels.find({request_field: {"$exists": True}}, {request_field: 1})
    taken = []
    for doc in list(found if limit is None else found.limit(limit)):
        # Matches only the request as read: of several workers one takes it.
        result = channels.update_one(
            {"_id": doc["_id"], request_field: doc[request_field]},
            {"$unset": {request_field: ""}, **({"$set": on_take} if on_take else {})},
        )
        if result.modified_count == 1:
            taken.append(doc["_id"])
    return taken


def channel_test_send(*, channel_id: ObjectId) -> bool:
    """Sends the channel a marked test message and records the result in its `last_test_*`
    fields. Delivered: the channel answers again, so its breaker closes now (not at the end of
    its cooldown). Returns whether it was delivered."""
    # Imported here: the kinds' dispatch imports this module's URL rule.
    from channels_app.kinds import kind_get

    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        return False
    outcome = kind_get(channel.kind).test_send(channel=channel, log_context={"channel": str(channel.pk), "test": True})
    result = f"HTTP {outcome.status_code} in {outcome.elapsed_ms:.0f} ms" if outcome.ok else outcome.error
    mongo_collection(Channel._meta.db_table).update_one(
        {"_id": channel_id},
        {
            "$set": {"last_test_at": timezone.now(), "last_test_ok": outcome.ok, "last_test_result": result[:500]},
            "$unset": {"test_sending_at": ""},
        },
    )
    if outcome.ok:
        breaker_closed(channel.pk)
    return outcome.ok


# The channel's "last delivery" columns are written at most this often per process unless
# the state changes: on the delivery path they would otherwise cost a write per reply.
CHANNEL_NOTE_INTERVAL_S = 5.0
_notes: dict[ObjectId, tuple[str, float]] = {}
_notes_lock = threading.Lock()


def channel_delivery_note(*, channel_id: ObjectId, state: str, when: datetime) -> None:
    """The channel list's "last delivery" columns, after a delivery attempt."""
    now = time.monotonic()
    with _notes_lock:
        previous = _notes.get(channel_id)
        if previous and previous[0] == state and now - previous[1] < CHANNEL_NOTE_INTERVAL_S:
            return
        _notes[channel_id] = (state, now)
    mongo_collection(Channel._meta.db_table).update_one(
        {"_id": channel_id}, {"$set": {"last_delivery_state": state, "last_delivery_at": when}}
    )
