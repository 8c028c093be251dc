"""The webhook and the worker write messages with pymongo through `message_document`: it must
write exactly the fields of the `Message` model, so the admin and the API read the same."""

from __future__ import annotations

from datetime import UTC, datetime

from bson import ObjectId

from dialogues.documents import message_document
from dialogues.models import Message


def test_message_document_writes_exactly_the_models_fields() -> None:
    doc = message_document(
        dialogue_id=ObjectId(), chat_bot_id=ObjectId(), channel_id=ObjectId(), message_id="m-1", role="USER",
        text="hello", created_at=datetime.now(UTC),
    )  # fmt: skip
    model_fields = {field.column for field in Message._meta.concrete_fields if not field.primary_key}
    assert set(doc) == model_fields


def test_llm_usage_overrides_only_model_fields() -> None:
    doc = message_document(
        dialogue_id=ObjectId(), chat_bot_id=ObjectId(), channel_id=ObjectId(), message_id="m-1", role="ASSISTANT",
        text="hi", created_at=datetime.now(UTC), llm={"llm_backend": "mock", "prompt_tokens": 3},
    )  # fmt: skip
    assert doc["llm_backend"] == "mock" and doc["prompt_tokens"] == 3
    assert set(doc) == {field.column for field in Message._meta.concrete_fields if not field.primary_key}
