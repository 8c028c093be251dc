"""The small version of `make scale`: three hosts in network namespaces behind nginx running
deploy/nginx.conf, one host killed mid-load and restarted, the database stopped and started
again; every message stored once, every reply delivered, repeats only with the same key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scale.__main__ import nginx_binary
from scale.net import missing_requirements

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.skipif(bool(missing_requirements()) or nginx_binary() is None,
                    reason="needs root, iproute2 and nginx (scripts/install-nginx)")  # fmt: skip
def test_three_hosts_behind_nginx_lose_nothing_when_one_dies_and_the_database_stops(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    run = subprocess.run(
        [sys.executable, "-m", "scale", "--messages", "300", "--concurrency", "8", "--db-outage-s", "3",
         "--chats", "60", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    checks = result["checks"]
    assert checks["messages_stored"] == 300 and checks["messages_stored_once"], checks
    assert checks["replies_delivered"] == 300 and checks["every_reply_received"], checks
    assert checks["one_reply_per_message"] and checks["no_message_answered_under_two_keys"], checks
    assert checks["repeats_carry_the_same_key"] and checks["repeats_only_from_the_kill"], checks
    assert result["refused"] == [], result["refused"]
    phases = {row["phase"]: row for row in result["phases"]}
    assert set(phases) == {"steady", "host down", "host back", "database down", "recovered"}
    # The kill costs the client no error answer: nginx sends the webhook POSTs in flight on the
    # dead host to another one. Only an answer the host had begun (its header passed on, its
    # body not) cannot be sent again: it reaches the client as a broken connection, counted by
    # nginx, and the client's retry with the same message_id is stored once (checks above).
    assert phases["host down"]["messages"] > 0
    assert phases["host down"]["non_2xx"] == 0, phases
    assert phases["host down"]["connection_errors"] <= result["responses_cut_by_the_kill"], (phases, result)
    assert run.returncode == 0, run.stdout[-3000:]
