"""Fewer indexes written per message (issue: cost per message). On the embedded server every
write rewrites every index entry of its document (docs/internals.md, "Known quirks"); on MongoDB each index
is one more write per insert.

- The dialogue's natural key becomes a whole unique index with the look-up's field first,
  (chat_id, chat_bot_id, channel_id). The backend makes every UniqueConstraint partial (`$type`
  conditions), and the embedded server never reads through a partial unique index, so the key
  needed a second index for its look-up (`dialogue_chat_id`), rewritten by every one of the
  dialogue's updates (about three per message). Whole, the unique index serves both. It is
  built before the old ones are dropped, so uniqueness never lapses. (The messages' key stays
  as it is: it must start with `dialogue_id`, their shard key, deploy/MONGODB.md.)
- `message_delivery_queue` (delivery_state, next_attempt_at) goes: only two operator actions
  read it, and they read the few owed replies of a state on (delivery_state, created_at) or
  (channel_id, delivery_state, created_at) with the retry time checked beside.
"""

from django.db import migrations

DIALOGUES = "dialogues_dialogue"
UNIQUE = [
    (DIALOGUES, "uniq_dialogue_chat", [("chat_id", 1), ("chat_bot_id", 1), ("channel_id", 1)]),
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
        migrations.RemoveIndex(model_name="message", name="message_delivery_queue"),
    ]
