"""The same-host wake-up (core.worker_wake): the webhook's datagram ends an idle worker's wait,
and a wake-up with nobody to receive it costs the webhook nothing."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

import worker.loop
from channels_app.models import Channel
from core.worker_wake import WakeSocket, worker_wake
from devtools.receiver import ChannelReceiver
from dialogues.models import Message
from dialogues.tests.conftest import customer_message
from worker.loop import Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def wake_dir() -> Iterator[Path]:
    # Short: a Unix socket's path is limited to 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="wake-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_idle_worker_is_woken_by_the_webhook(
    channel: Channel, post_webhook, receiver: ChannelReceiver, wake_dir: Path, monkeypatch
) -> None:
    # Backed off at once, and every look 30 s apart: without the wake-up the reply would
    # come at the next look, 30 s after the first.
    monkeypatch.setattr(worker.loop, "HOT_S", 0.0)
    with override_settings(WORKER_WAKE_DIR=str(wake_dir)):
        idle = Worker(threads=2, poll_ms=30_000, idle_poll_ms=30_000)
        runner = threading.Thread(target=idle.run, daemon=True)
        runner.start()
        try:
            deadline = time.monotonic() + 5
            while not list(wake_dir.glob("*.sock")) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)  # its first look (nothing due) is over; it waits
            assert post_webhook(customer_message(channel, message_id="m-1")).status_code == 200
            receiver.wait_for(1, timeout=10)
        finally:
            idle.stop(wait_s=5)
            runner.join(5)
    assert [r.json["in_reply_to"] for r in receiver.requests] == ["m-1"]
    assert not list(wake_dir.glob("*.sock"))  # removed when it stopped


def test_a_wake_up_nobody_receives_leaves_the_webhook_alone(channel: Channel, post_webhook, wake_dir: Path) -> None:
    # A dead worker's socket (bound, then closed without removing it) and a stray file.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(wake_dir / "1.sock"))
    stale.close()
    (wake_dir / "2.sock").write_text("")
    for directory in (wake_dir, wake_dir / "missing"):
        with override_settings(WORKER_WAKE_DIR=str(directory)):
            assert worker_wake() == 0
            started = time.monotonic()
            response = post_webhook(customer_message(channel, message_id=f"m-{directory.name}"))
            assert response.status_code == 200 and time.monotonic() - started < 2.0
    assert Message.objects.filter(role=Message.Role.USER).count() == 2
    # A worker starting there clears the dead socket away and takes the datagrams.
    live = WakeSocket(str(wake_dir))
    assert live.open()
    try:
        assert not (wake_dir / "1.sock").exists()
        with override_settings(WORKER_WAKE_DIR=str(wake_dir)):
            assert worker_wake() == 1
        assert live.receive() == b"w"
    finally:
        live.close()
