"""The webhook and the management API fuzzed from the served OpenAPI schema (schemathesis),
against the real server: no 5xx, and every response matches the schema (status code
documented, content type and body as declared). A bounded number of examples per operation,
positive (valid by the schema) and negative (invalid) alike."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from channels_app.tests.factories import ChannelFactory
from tests.fault.conftest import SEED_HEADER
from tests.support.live_server import LiveServer
from tests.support.receiver import ChannelReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _fuzz_operation(operation: Any, *, mode: GenerationMode, base_url: str, headers: dict[str, str],
                    session: requests.Session, statuses: list[int]) -> None:  # fmt: skip
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        # Our credentials always, so the fuzzing reaches past authentication.
        case.headers = {**(case.headers or {}), **headers}
        response = case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=30)
        statuses.append(response.status_code)

    run()


def test_api_fuzzed_from_its_schema(fault_server: LiveServer, receiver: ChannelReceiver, staff_user) -> None:  # type: ignore[no-untyped-def]
    channel = ChannelFactory(url=receiver.url)
    api_headers = {"Authorization": f"Token {Token.objects.create(user=staff_user).key}"}
    webhook_headers = {SEED_HEADER: f"Bearer {channel.chat_bot.plain_secret}"}
    schema = schemathesis.openapi.from_url(fault_server.url + "/api/schema/?format=json")
    session = requests.Session()

    failures: list[str] = []
    statuses: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        headers = webhook_headers if "webhook" in operation.path else api_headers
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(
                    operation, mode=mode, base_url=fault_server.url, headers=headers, session=session, statuses=statuses
                )
            except Exception as exc:  # noqa: BLE001 - every operation is reported, not just the first
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    assert operations >= 5, "the schema lists too few operations; is /api/schema/ served?"
    assert not failures, "\n\n".join(failures)
    # The fuzzing did reach the endpoints, past authentication, with valid and invalid input.
    assert len(statuses) >= operations * EXAMPLES_PER_OPERATION
    assert any(200 <= s < 300 for s in statuses)
    assert any(400 <= s < 500 and s not in (401, 403) for s in statuses)
    print(f"schemathesis: {operations} operations, {len(statuses)} requests, statuses {sorted(set(statuses))}")
