"""The rule for where a channel URL may point: globally routable addresses only. Python
versions disagree on several special-purpose ranges, so this runs on 3.12 and 3.13 alike."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.services import channel_create, channel_update, channel_url_check, is_public_address
from channels_app.tests.factories import ChannelFactory
from chatbots.tests.factories import ChatBotFactory
from core.errors import ApplicationError

# The IANA special-purpose ranges (and a few more), none of which a channel may be on.
REFUSED_RANGES = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2002::/16",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
]
# Ranges whose addresses stand for an embedded IPv4 address, judged by it: their first and
# last addresses embed 0.0.0.0 and 255.255.255.255; the middle one would embed a public address.
EMBEDDING_RANGES = ["::ffff:0:0/96", "64:ff9b::/96"]


def first_middle_last(cidr: str) -> list[str]:
    net = ipaddress.ip_network(cidr)
    return sorted({str(net[0]), str(net[net.num_addresses // 2]), str(net[-1])})


REFUSED = sorted(
    {address for cidr in REFUSED_RANGES for address in first_middle_last(cidr)}
    | {str(ipaddress.ip_network(cidr)[index]) for cidr in EMBEDDING_RANGES for index in (0, -1)}
    | {
        # The ones that slipped through before, or that some Python calls global.
        "100.100.100.200",  # a cloud metadata address in 100.64.0.0/10
        "169.254.169.254",
        "192.0.0.8",
        "192.0.0.9",
        "fec0::1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:808:808::",  # 6to4 of a public address: refused all the same
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:100.100.100.200",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b:1::808:808",
        "fe80::1%eth0",
    }
)
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "9.9.9.9",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    # A public IPv4 address behind an IPv4-mapped or NAT64 address (DNS64 networks answer so).
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
]


@pytest.mark.parametrize("address", REFUSED)
def test_special_purpose_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


def test_every_listed_range_is_covered_by_the_table() -> None:
    """Each range's first, middle and last address is in the table above (guards the table)."""
    for cidr in REFUSED_RANGES:
        assert set(first_middle_last(cidr)) <= set(REFUSED), cidr


@pytest.mark.parametrize(
    "url",
    [
        "http://100.100.100.200/",
        "http://100.100.100.200/latest/meta-data/",
        "http://169.254.169.254/latest",
        "http://[fec0::1]/",
        "http://[2002:7f00:1::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/hook",
        "http://[64:ff9b::7f00:1]/",
        "http://[fe80::1%25eth0]/",
        "https://127.0.0.1:8443/hook",
        "http://[::1]:8000/",
        "http://192.0.0.8/",
        "http://user:pass@10.0.0.1/",
    ],
)
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_urls_on_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(ApplicationError, match="private network"):
        channel_url_check(url)


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "017700000001", "127.1", "0", "localhost"])
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_numeric_and_named_hosts_are_judged_by_what_they_resolve_to(host: str) -> None:
    """`http://2130706433/` is 127.0.0.1 to the system's resolver (inet_aton's decimal, hex and
    octal forms), and so to the HTTP client that would connect to it."""
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        pytest.skip(f"this resolver does not map {host!r}")
    assert resolved & {"127.0.0.1", "0.0.0.0", "::1"}  # noqa: S104 - an address, not a bind
    with pytest.raises(ApplicationError, match="private network"):
        channel_url_check(f"http://{host}/hook")


@pytest.mark.parametrize(
    "url",
    ["http://8.8.8.8/hook", "https://1.1.1.1:8443/", "https://[2606:4700:4700::1111]/hook", "http://[::ffff:8.8.8.8]/"],
)
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_urls_on_public_addresses_are_accepted(url: str) -> None:
    assert channel_url_check(url) == url


@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_a_host_that_resolves_to_nothing_is_left_to_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_answer(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_answer)
    assert channel_url_check("https://not-yet-registered.example/hook") == "https://not-yet-registered.example/hook"


@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_a_host_with_any_non_public_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def answers(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        assert host == "mixed.example"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::1", 0, 0, 0)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", answers)
    with pytest.raises(ApplicationError, match="private network"):
        channel_url_check("https://mixed.example/hook")


@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=True)
def test_private_urls_pass_when_allowed() -> None:
    assert channel_url_check("http://100.100.100.200/") == "http://100.100.100.200/"


@pytest.mark.parametrize("url", ["ftp://a.example/", "http://", "http://[::1", "/relative", ""])
def test_malformed_urls_are_refused_whatever_the_setting(url: str) -> None:
    with pytest.raises(ApplicationError, match="url"):
        channel_url_check(url)


# --- The services apply it; the API and the admin only translate its error ------------------


@pytest.mark.django_db
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_channel_services_refuse_non_public_urls() -> None:
    bot = ChatBotFactory.create()
    with pytest.raises(ApplicationError, match="private network"):
        channel_create(chat_bot=bot, name="Metadata", url="http://100.100.100.200/")
    assert not Channel.objects.exists()
    channel = channel_create(chat_bot=bot, name="Public", url="https://8.8.8.8/hook")
    with pytest.raises(ApplicationError, match="private network"):
        channel_update(channel=channel, url="http://[2002:7f00:1::]/")
    channel.refresh_from_db()
    assert channel.settings.url == "https://8.8.8.8/hook"


@pytest.mark.django_db
@override_settings(CHANNEL_ALLOW_PRIVATE_URLS=False)
def test_the_api_reports_the_services_refusal_as_a_url_field_error(api_client: APIClient) -> None:
    bot = ChatBotFactory.create()
    body = {"name": "Web", "chat_bot_id": str(bot.pk), "url": "http://100.100.100.200/"}
    response = api_client.post("/api/channels/", body, format="json")
    assert response.status_code == 400
    assert "private network" in response.json()["url"][0]
    with override_settings(CHANNEL_ALLOW_PRIVATE_URLS=True):
        channel = ChannelFactory.create()
    response = api_client.patch(f"/api/channels/{channel.pk}", {"url": "http://[fec0::1]/"}, format="json")
    assert response.status_code == 400
    assert "private network" in response.json()["url"][0]
