"""The LLM stage's capacity: a dialogue waiting for its answer holds no thread (`worker.tasks`,
`llm.aio`), so a worker with two threads keeps eighty calls in flight."""

from __future__ import annotations

import pytest

from channels_app.models import Channel
from devtools.receiver import ChannelReceiver
from dialogues.tests.conftest import customer_message
from worker.loop import Worker

CONVERSATIONS = 100


@pytest.mark.django_db
def test_two_threads_keep_eighty_llm_calls_in_flight_and_answer_each_once(
    channel: Channel, post_webhook, receiver: ChannelReceiver, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.LLM_MOCK_DELAY_MS = 1000
    for n in range(CONVERSATIONS):
        body = customer_message(channel, message_id=f"m-{n}", chat_id=f"chat-{n}", channel_id=str(channel.pk))
        assert post_webhook(body).status_code == 200
    worker = Worker(threads=2, poll_ms=5)
    try:
        worker.drain(timeout_s=60)
        # With a thread per waiting call, two threads would keep two calls in flight.
        assert worker.runtime.peak_in_flight >= 80
    finally:
        worker.close()
    assert sorted(r.json["in_reply_to"] for r in receiver.requests) == sorted(f"m-{n}" for n in range(CONVERSATIONS))
