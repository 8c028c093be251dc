"""Claims of due dialogues: each is held by one claimant at a time, however many race for it."""

from __future__ import annotations

import threading

import pytest
from django.utils import timezone

from channels_app.models import Channel
from dialogues.store.claims import DialogueClaim, dialogue_release, dialogues_claim, dialogues_due
from dialogues.store.collections import dialogues_collection
from dialogues.store.reservation import dialogue_reserve

pytestmark = pytest.mark.django_db


def _due_dialogues(channel: Channel, count: int) -> None:
    for number in range(count):
        dialogue_reserve(
            chat_bot_id=channel.chat_bot_id, channel_id=channel.pk, chat_id=f"chat-{number}", reserve=2, owes_work=True
        )
    dialogues_collection().update_many({}, {"$set": {"work_due_at": timezone.now()}})


def test_a_batch_claim_takes_every_free_dialogue_in_one_go_and_skips_the_held_ones(channel: Channel) -> None:
    _due_dialogues(channel, 5)
    due = dialogues_due(limit=10)
    assert len(due) == 5
    first = dialogues_claim(due[:2])
    assert len(first) == 2
    # The same documents again, as a slower scheduler read them: only the three still free.
    second = dialogues_claim(due)
    assert {c.dialogue_id for c in second} == {d["_id"] for d in due[2:]}
    held = {doc["_id"]: doc["claim_token"] for doc in dialogues_collection().find({}, {"claim_token": 1})}
    for claim in [*first, *second]:
        assert held[claim.dialogue_id] == claim.token
    # A release is fenced by the claim: the batch's token with the dialogue's id.
    assert dialogue_release(second[0], done_seq=0, settled=False)
    assert not dialogue_release(second[0], done_seq=0, settled=False)
    assert dialogues_claim([]) == []


def test_schedulers_racing_for_the_same_due_dialogues_claim_each_exactly_once(channel: Channel) -> None:
    _due_dialogues(channel, 30)
    due = dialogues_due(limit=100)
    won: list[list[DialogueClaim]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def race(i: int) -> None:
        barrier.wait()
        # Each scheduler read the same due list; they claim it in different orders.
        won[i] = dialogues_claim(due[i:] + due[:i])

    threads = [threading.Thread(target=race, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    claimed = [claim.dialogue_id for claims in won for claim in claims]
    assert sorted(claimed) == sorted(doc["_id"] for doc in due)  # every one, once
    held = {doc["_id"]: doc["claim_token"] for doc in dialogues_collection().find({}, {"claim_token": 1})}
    for claims in won:
        for claim in claims:
            assert held[claim.dialogue_id] == claim.token
