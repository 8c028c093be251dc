"""The collections the reply pipeline writes, and what its modules share about them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from channels_app.models import DeliveryState
from core.mongo import mongo_collection
from dialogues.models import Dialogue, Message

# `claim_until` of a dialogue nobody holds: always a date, so that "free" is one range
# condition the embedded server can evaluate next to the due index (with `$or` on a missing
# or null field it scans every dialogue).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RETRYABLE_STATES = [DeliveryState.PENDING.value, DeliveryState.FAILED.value]
# Delivery states that still owe the channel something (parked ones wait for the channel).
OWED_STATES = [*RETRYABLE_STATES, DeliveryState.PARKED.value]
# What an operator's take-over cancels: every bot reply not delivered (a dead one too, which
# an operator could otherwise redeliver after the take-over).
CANCELLABLE_STATES = [*OWED_STATES, DeliveryState.DEAD.value]


def messages_collection() -> Any:
    return mongo_collection(Message._meta.db_table)


def dialogues_collection() -> Any:
    return mongo_collection(Dialogue._meta.db_table)
