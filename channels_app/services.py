from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from channels_app.models import URL_MAX_LENGTH, Channel, ChannelSettings
from chatbots.models import ChatBot
from core.errors import ApplicationError
from core.tokens import generate_channel_token


def validate_channel_url(url: str) -> str:
    """An absolute http(s) URL of at most 2,048 characters, with no control characters."""
    if not isinstance(url, str) or not url:
        raise ApplicationError("url is required")
    if len(url) > URL_MAX_LENGTH:
        raise ApplicationError(f"url must be at most {URL_MAX_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise ApplicationError("url must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApplicationError("url must be an absolute http:// or https:// URL")
    return url


def is_private_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified


def url_targets_private_network(url: str) -> bool:
    """True when the URL's host is, or resolves to, a loopback, private or link-local address.
    Unresolvable hosts count as not private (delivery will fail on its own)."""
    host = urlsplit(url).hostname or ""
    try:
        return is_private_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    return any(is_private_address(info[4][0]) for info in infos)


def private_url_refused(url: str) -> bool:
    return not settings.CHANNEL_ALLOW_PRIVATE_URLS and url_targets_private_network(url)


def channel_create(*, chat_bot: ChatBot, name: str, url: str, is_active: bool = True) -> Channel:
    url = validate_channel_url(url)
    return Channel.objects.create(
        chat_bot=chat_bot,
        name=name,
        settings=ChannelSettings(url=url, token=generate_channel_token()),
        is_active=is_active,
    )


def channel_update(
    *, channel: Channel, name: str | None = None, url: str | None = None, is_active: bool | None = None
) -> Channel:
    fields = ["updated_at"]
    if name is not None:
        channel.name = name
        fields.append("name")
    if url is not None:
        channel.settings.url = validate_channel_url(url)
        fields.append("settings")
    if is_active is not None:
        channel.is_active = is_active
        fields.append("is_active")
    channel.save(update_fields=fields)
    return channel


def channel_rotate_token(*, channel: Channel) -> str:
    token = generate_channel_token()
    channel.settings.token = token
    channel.save(update_fields=["settings", "updated_at"])
    return token


def channel_set_active(*, channel: Channel, is_active: bool) -> Channel:
    return channel_update(channel=channel, is_active=is_active)
