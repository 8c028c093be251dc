"""The compare-and-set on a dialogue's `last_seq` that reservations and take-overs go through."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId
from django.utils import timezone

from channels_app.models import Channel
from dialogues.store.collections import dialogues_collection
from dialogues.store.handoff import dialogue_take_over
from dialogues.store.reservation import (
    DialogueSlot,
    dialogue_compare_and_set,
    dialogue_reserve,
    dialogue_reserve_existing,
)


def _reserve(channel: Channel, *, reserve: int = 2, **kwargs: Any) -> DialogueSlot:
    return dialogue_reserve(
        chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, chat_id="chat-1", reserve=reserve, **kwargs
    )


def test_a_compare_and_set_that_loses_reads_the_dialogue_again_and_retries(channel: Channel) -> None:
    slot = _reserve(channel, owes_work=False)
    views: list[int] = []

    def write(view: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int]:
        views.append(view["last_seq"])
        if len(views) == 1:
            # Another writer reserves in between: this update's match no longer holds.
            dialogues_collection().update_one({"_id": slot.dialogue_id}, {"$inc": {"last_seq": 3}})
        return {}, {"$inc": {"last_seq": 1}}, view["last_seq"] + 1

    won = dialogue_compare_and_set(dialogue_id=slot.dialogue_id, write=write)

    assert won is not None and won[1] == 6
    assert views == [2, 5]
    assert dialogues_collection().find_one({"_id": slot.dialogue_id})["last_seq"] == 6


def test_a_compare_and_set_on_a_missing_dialogue_writes_nothing(channel: Channel) -> None:
    calls: list[dict[str, Any]] = []
    won = dialogue_compare_and_set(dialogue_id=ObjectId(), write=lambda view: calls.append(view) or ({}, {}, None))
    assert won is None and calls == []
    assert dialogue_reserve_existing(dialogue_id=ObjectId(), reserve=1, owes_work=True) is None
    assert dialogue_take_over(dialogue_id=ObjectId(), until=timezone.now()) is None


def test_reservations_from_a_stale_view_take_the_next_positions(channel: Channel) -> None:
    first = _reserve(channel, owes_work=True)
    # Another process reserved meanwhile: this process's cached position is behind.
    dialogues_collection().update_one({"_id": first.dialogue_id}, {"$inc": {"last_seq": 2, "message_count": 2}})
    second = _reserve(channel, owes_work=True)
    assert (first.first_seq, second.first_seq) == (1, 5)
    doc = dialogues_collection().find_one({"_id": first.dialogue_id})
    assert doc["last_seq"] == 6 and doc["message_count"] == 6


def test_a_reservation_after_the_dialogue_was_deleted_creates_it_again(channel: Channel) -> None:
    first = _reserve(channel, owes_work=True)
    dialogues_collection().delete_one({"_id": first.dialogue_id})
    second = _reserve(channel, owes_work=True)
    assert second.dialogue_id != first.dialogue_id and second.first_seq == 1


def test_a_paused_dialogue_seen_as_active_is_reserved_as_paused(channel: Channel) -> None:
    first = _reserve(channel, owes_work=True, paused_reserve=1)
    # Paused by another process: the cached view says active, the update's match finds it paused.
    dialogues_collection().update_one(
        {"_id": first.dialogue_id},
        {"$set": {"paused_until": timezone.now() + timedelta(hours=1)}, "$unset": {"work_due_at": ""}},
    )
    second = _reserve(channel, owes_work=True, paused_reserve=1)
    assert second.paused and second.reserved == 1 and second.first_seq == 3
    assert "work_due_at" not in dialogues_collection().find_one({"_id": first.dialogue_id})


def test_a_take_over_marks_every_position_reserved_so_far(channel: Channel) -> None:
    slot = _reserve(channel, reserve=4, owes_work=False)
    assert dialogue_take_over(dialogue_id=slot.dialogue_id, until=timezone.now() + timedelta(hours=1)) == 4
    after = _reserve(channel, owes_work=True, paused_reserve=1)
    assert after.paused and after.first_seq == 5
    assert dialogues_collection().find_one({"_id": slot.dialogue_id})["handoff_seq"] == 4
