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
    assert ("chat_bot_id", "channel_id", "chat_id") in unique["dialogues_dialogue"]
    assert ("dialogue_id", "message_id") in unique["dialogues_message"]
    assert ("dialogue_id", "in_reply_to") in unique["dialogues_message"]
    assert ("secret_hash",) in unique["chatbots_chatbot"]
