from __future__ import annotations

import pytest
from django.core.management import call_command
from pymongo import MongoClient


@pytest.mark.django_db
def test_makemigrations_check_is_clean() -> None:
    # Includes the MongoDB migrations for Django's admin, auth and contenttypes apps.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_uniqueness_rules_are_unique_indexes(settings) -> None:  # type: ignore[no-untyped-def]
    db = MongoClient(settings.DATABASES["default"]["HOST"])[settings.DATABASES["default"]["NAME"]]
    unique = {
        collection: {tuple(ix["key"].keys()) for ix in db[collection].list_indexes() if ix.get("unique")}
        for collection in ("dialogues_dialogue", "dialogues_message", "chatbots_chatbot")
    }
    assert ("chat_id", "chat_bot_id", "channel_id") in unique["dialogues_dialogue"]
    assert ("dialogue_id", "message_id") in unique["dialogues_message"]
    assert ("dialogue_id", "in_reply_to") in unique["dialogues_message"]
    assert ("secret_hash",) in unique["chatbots_chatbot"]
    assert ("name_key",) in unique["chatbots_chatbot"]


@pytest.mark.django_db
def test_the_dialogue_key_is_a_whole_unique_index_that_serves_its_look_up(settings) -> None:  # type: ignore[no-untyped-def]
    # Partial, the embedded server would not read through it and the key would need a second
    # index, rewritten by every update of the dialogue (migration dialogues 0011).
    db = MongoClient(settings.DATABASES["default"]["HOST"])[settings.DATABASES["default"]["NAME"]]
    index = db["dialogues_dialogue"].index_information()["uniq_dialogue_chat"]
    assert index["unique"] is True
    assert "partialFilterExpression" not in index
    names = set(db["dialogues_message"].index_information()) | set(db["dialogues_dialogue"].index_information())
    assert not names & {"message_delivery_queue", "dialogue_chat_id"}
