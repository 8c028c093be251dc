"""Fewer indexes written per message (issue: cost per message). On the embedded server every
write rewrites every index entry of its document (README, "Known quirks"); on MongoDB each index
is one more write per insert.

- The two natural keys become whole unique indexes with the look-up's field first:
  (chat_id, chat_bot_id, channel_id) for dialogues and (message_id, dialogue_id) for messages.
  The backend makes every UniqueConstraint partial (`$type` conditions), and the embedded
  server never reads through a partial unique index, so each key needed a second index for its
  reads (`dialogue_chat_id`, `message_message_id`). Whole, the unique index serves both.
  The new index is built before the old ones are dropped, so uniqueness never lapses.
- `message_delivery_queue` (delivery_state, next_attempt_at) goes: only two operator actions
  read it, and they read the few owed replies of a state on (delivery_state, created_at) or
  (channel_id, delivery_state, created_at) with the retry time checked beside.
"""

from django.db import migrations

DIALOGUES = "dialogues_dialogue"
MESSAGES = "dialogues_message"
UNIQUE = [
    (DIALOGUES, "uniq_dialogue_chat", [("chat_id", 1), ("chat_bot_id", 1), ("channel_id", 1)]),
    (MESSAGES, "uniq_message_id_dialogue", [("message_id", 1), ("dialogue_id", 1)]),
]


def create(apps, schema_editor):
    database = schema_editor.connection.database
    for collection, name, keys in UNIQUE:
        database[collection].create_index(keys, name=name, unique=True)


def drop(apps, schema_editor):
    database = schema_editor.connection.database
    for collection, name, _keys in UNIQUE:
        database[collection].drop_index(name)


class Migration(migrations.Migration):
    dependencies = [
        ("dialogues", "0010_dialogue_paused_partial"),
    ]

    operations = [
        # Reversed, the old constraints and indexes come back first, then these go.
        migrations.RunPython(create, drop),
        migrations.RemoveConstraint(model_name="dialogue", name="uniq_dialogue_bot_channel_chat"),
        migrations.RemoveIndex(model_name="dialogue", name="dialogue_chat_id"),
        migrations.RemoveConstraint(model_name="message", name="uniq_message_per_dialogue"),
        migrations.RemoveIndex(model_name="message", name="message_message_id"),
        migrations.RemoveIndex(model_name="message", name="message_delivery_queue"),
    ]
