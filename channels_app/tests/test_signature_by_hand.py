"""docs/channels.md shows how to verify a reply's signature with the standard library alone. This
runs that very code block, read from the page, against replies signed as the platform signs
them, so the page cannot drift from what channels receive."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import responses

from channels_app.dispatch import channel_attempt, reply_payload, signature_headers
from channels_app.services import generate_signing_secret

DOC = Path(__file__).resolve().parents[2] / "docs" / "channels.md"
MARKER = "<!-- signature-snippet: the test reads the python block below -->"
URL = "https://channel.example.com/hook"

Verify = Callable[[str, dict[str, str], bytes], bool]


def _snippet() -> str:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"{DOC.name} lost its signature snippet's marker"
    match = re.match(r"\s*```python\n(.*?)\n```", text.split(MARKER, 1)[1], re.DOTALL)
    assert match, "the marker must be followed by a ```python block"
    return match.group(1)


@pytest.fixture
def verify() -> Verify:
    namespace: dict[str, object] = {}
    exec(compile(_snippet(), str(DOC), "exec"), namespace)  # noqa: S102 - our own docs, the point of the test
    return namespace["verify"]  # type: ignore[return-value]


def _signed(*, secrets: list[str], body: bytes, msg_id: str = "r-1", at: float | None = None) -> dict[str, str]:
    return {"webhook-id": msg_id, **signature_headers(msg_id=msg_id, body=body, secrets=secrets, at=at)}


def test_the_snippet_uses_the_standard_library_only() -> None:
    imports = set(re.findall(r"^(?:import|from) (\w+)", _snippet(), re.MULTILINE))
    assert imports == {"base64", "hashlib", "hmac", "time"}


def test_the_snippet_accepts_a_signed_reply_and_refuses_a_forged_one(verify: Verify) -> None:
    secret = generate_signing_secret()
    body = json.dumps(reply_payload(message_id="r-1", text="Привет", chat_id="c-1", in_reply_to="m-1")).encode()
    headers = _signed(secrets=[secret], body=body)

    assert verify(secret, headers, body)
    assert not verify(secret, headers, body.replace(b"c-1", b"c-2"))  # the body changed
    assert not verify(generate_signing_secret(), headers, body)  # another channel's secret
    assert not verify(secret, {**headers, "webhook-id": "r-2"}, body)  # the id is signed too
    stale = _signed(secrets=[secret], body=body, at=time.time() - 600)
    assert not verify(secret, stale, body)  # a replay from 10 minutes ago


def test_the_snippet_accepts_either_secret_during_a_rotation(verify: Verify) -> None:
    old, new = generate_signing_secret(), generate_signing_secret()
    body = b'{"type": "message"}'
    headers = _signed(secrets=[new, old], body=body)

    assert len(headers["webhook-signature"].split()) == 2
    assert verify(old, headers, body) and verify(new, headers, body)


@responses.activate
def test_the_snippet_verifies_what_a_channel_receives(verify: Verify) -> None:
    # The POST as it goes out (its exact body bytes and headers), not a reconstruction.
    responses.post(URL, status=200)
    secret = generate_signing_secret()
    payload = reply_payload(message_id="r-7", text="ünïcode \u2028 text", chat_id="c-1", in_reply_to="m-7")

    outcome = channel_attempt(url=URL, token="tok", payload=payload, idempotency_key="r-7", signing_secrets=[secret])

    assert outcome.ok
    [call] = responses.calls
    body = call.request.body
    assert isinstance(body, bytes)
    headers = {name.lower(): value for name, value in call.request.headers.items() if isinstance(value, str)}
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
