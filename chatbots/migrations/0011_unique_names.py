"""One name per bot, whatever its case: `name_key` (the name case-folded) under a unique
index. Existing bots get their key oldest first; a bot that shares its name with an older one
keeps a null key (outside the partial index) and stays marked in the admin's list until an
operator renames it."""

from django.db import migrations, models


def fill_name_keys(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("chatbots", "ChatBot")
    collection = schema_editor.connection.get_collection(model._meta.db_table)
    taken: set[str] = set()
    for document in collection.find({}, {"_id": 1, "name": 1}).sort([("created_at", 1), ("_id", 1)]):
        key = str(document.get("name", "")).casefold()
        if key in taken:
            continue
        taken.add(key)
        collection.update_one({"_id": document["_id"]}, {"$set": {"name_key": key}})


class Migration(migrations.Migration):
    dependencies = [
        ("chatbots", "0010_vision"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatbot",
            name="name_key",
            field=models.CharField(default=None, editable=False, max_length=200, null=True, unique=True),
        ),
        migrations.RunPython(fill_name_keys, migrations.RunPython.noop),
    ]
