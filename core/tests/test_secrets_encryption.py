"""Secrets encrypted at rest (core.crypto, core.fields): what the database holds, what the app
reads, key rotation, the migration, and a wrong key stopping start-up with one clear line."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from channels_app.models import Channel
from channels_app.services import channel_create, channel_signing_secret_rotate, channel_signing_secrets
from chatbots.models import ChatBot
from chatbots.services import chatbot_webhook_signing_secret_rotate, chatbot_webhook_signing_secrets
from chatbots.tests.factories import ChatBotFactory
from core.crypto import PREFIX, VARIABLE, SecretsKeyError, parse_keys, secret_decrypt, secret_encrypt
from core.fields import secrets_key_check
from core.mongo import mongo_collection
from devtools.receiver import ChannelReceiver

ROOT = Path(__file__).resolve().parents[2]
URL = "https://channel.example.com/hook"
OLD_KEY = settings.SECRETS_ENCRYPTION_KEYS[0]
NEW_KEY = Fernet.generate_key().decode()


def _raw(model: type[Any], pk: Any) -> dict[str, Any]:
    document = mongo_collection(model._meta.db_table).find_one({"_id": pk})
    assert document is not None
    return document


def _bot_and_channel() -> tuple[ChatBot, Channel, dict[str, str]]:
    """A bot and a channel with every kind of secret set, a previous one included."""
    bot = ChatBotFactory()
    first_bot_secret = bot.webhook_signing_secret
    bot_secret = chatbot_webhook_signing_secret_rotate(chat_bot=bot, overlap_s=600)
    channel = channel_create(chat_bot=bot, name="Web", url=URL)
    first_channel_secret = channel.signing_secret
    channel_secret = channel_signing_secret_rotate(channel=channel, overlap_s=600)
    plain = {
        "token": channel.settings.token,
        "channel_secret": channel_secret,
        "channel_previous": first_channel_secret,
        "bot_secret": bot_secret,
        "bot_previous": first_bot_secret,
    }
    return bot, channel, plain


def _stored(bot: ChatBot, channel: Channel) -> list[str]:
    channel_doc, bot_doc = _raw(Channel, channel.pk), _raw(ChatBot, bot.pk)
    return [
        channel_doc["settings"]["token"],
        channel_doc["signing_secret"],
        channel_doc["previous_signing_secret"],
        bot_doc["webhook_signing_secret"],
        bot_doc["previous_webhook_signing_secret"],
    ]


@pytest.mark.django_db
def test_the_database_holds_ciphertext_and_the_app_reads_the_secrets() -> None:
    bot, channel, plain = _bot_and_channel()

    stored = _stored(bot, channel)
    assert all(value.startswith(PREFIX) for value in stored)
    documents = repr(_raw(Channel, channel.pk)) + repr(_raw(ChatBot, bot.pk))
    assert not any(secret in documents for secret in plain.values())

    channel = Channel.objects.get(pk=channel.pk)
    bot = ChatBot.objects.get(pk=bot.pk)
    assert channel.settings.token == plain["token"]
    assert channel_signing_secrets(channel=channel) == [plain["channel_secret"], plain["channel_previous"]]
    assert chatbot_webhook_signing_secrets(chat_bot=bot) == [plain["bot_secret"], plain["bot_previous"]]


@pytest.mark.django_db
def test_the_api_shows_the_token_in_plaintext_and_filters_by_empty_secret_still_work(api_client: APIClient) -> None:
    created = api_client.post("/api/channels/", {"name": "Web", "chat_bot_id": str(ChatBotFactory().pk), "url": URL})
    body = created.json()
    assert not body["token"].startswith(PREFIX) and not body["signing_secret"].startswith(PREFIX)
    assert api_client.get(f"/api/channels/{body['id']}").json()["token"] == body["token"]
    assert not Channel.objects.filter(signing_secret="").exists()
    Channel.objects.filter(pk=body["id"]).update(signing_secret="")
    assert Channel.objects.filter(signing_secret="").count() == 1


@pytest.mark.django_db
def test_the_worker_delivers_with_the_decrypted_token_and_signature(
    receiver: ChannelReceiver, drain: Callable[[], None]
) -> None:
    from standardwebhooks import Webhook

    bot = ChatBotFactory()
    channel = channel_create(chat_bot=bot, name="Web", url=receiver.url)
    assert _raw(Channel, channel.pk)["settings"]["token"].startswith(PREFIX)
    body = {"message_id": "m-1", "chat_id": str(channel.pk), "text": "Hello", "message_sender": "customer"}
    headers = {"x-chatbot_auth_token": f"Bearer {bot.plain_secret}"}
    assert APIClient().post("/api/webhook/new_message", body, format="json", headers=headers).status_code == 200

    drain()

    [request] = receiver.requests
    assert request.headers[settings.CHANNEL_AUTH_HEADER] == f"Bearer {channel.settings.token}"
    assert Webhook(channel.signing_secret).verify(request.body, request.headers)["in_reply_to"] == "m-1"


@pytest.mark.django_db
def test_a_rotated_key_still_decrypts_while_kept_second_and_reencrypt_moves_everything_to_the_new() -> None:
    bot, channel, plain = _bot_and_channel()

    with override_settings(SECRETS_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        assert Channel.objects.get(pk=channel.pk).settings.token == plain["token"]
        assert ChatBot.objects.get(pk=bot.pk).webhook_signing_secret == plain["bot_secret"]
        call_command("secrets_reencrypt", stdout=(out := _Output()))
        assert "2 documents re-encrypted" in out.text
        # Again: nothing left to do.
        call_command("secrets_reencrypt", stdout=(again := _Output()))
        assert "0 documents re-encrypted" in again.text

    # The old key dropped: everything reads with the new one alone, nothing with the old alone.
    with override_settings(SECRETS_ENCRYPTION_KEYS=[NEW_KEY]):
        channel = Channel.objects.get(pk=channel.pk)
        bot = ChatBot.objects.get(pk=bot.pk)
        assert channel.settings.token == plain["token"]
        assert channel_signing_secrets(channel=channel) == [plain["channel_secret"], plain["channel_previous"]]
        assert chatbot_webhook_signing_secrets(chat_bot=bot) == [plain["bot_secret"], plain["bot_previous"]]
        secrets_key_check()
    new_only = Fernet(NEW_KEY)
    assert all(new_only.decrypt(value[len(PREFIX) :].encode()) for value in _stored(bot, channel))


@pytest.mark.django_db
def test_a_wrong_key_is_a_configuration_error_that_names_the_variable_and_no_secret() -> None:
    bot, channel, plain = _bot_and_channel()

    with override_settings(SECRETS_ENCRYPTION_KEYS=[NEW_KEY]):
        with pytest.raises(SecretsKeyError) as raised:
            secrets_key_check()
        with pytest.raises(SecretsKeyError):
            Channel.objects.get(pk=channel.pk)
    message = str(raised.value)
    assert message.startswith(f"{VARIABLE} cannot decrypt") and "\n" not in message
    assert not any(value in message for value in [*plain.values(), *_stored(bot, channel)])


def test_malformed_keys_are_refused_naming_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match=f"^{VARIABLE} must hold .*key 2 is not one"):
        parse_keys(f"{NEW_KEY},not-a-key")
    with pytest.raises(ImproperlyConfigured, match=f"^{VARIABLE} must be set"):
        parse_keys(" , ")
    assert parse_keys(f" {NEW_KEY} , {OLD_KEY} ") == [NEW_KEY, OLD_KEY]


def test_values_stored_before_encryption_read_as_they_are_and_empty_stays_empty() -> None:
    assert secret_decrypt("whsec_plain") == "whsec_plain"
    assert secret_encrypt("") == "" and secret_decrypt("") == ""
    assert secret_encrypt("x") != secret_encrypt("x")  # never comparable by ciphertext


class _Output:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


@pytest.mark.django_db
def test_the_migrations_encrypt_stored_secrets_once_and_reverse() -> None:
    bot, channel, plain = _bot_and_channel()
    # As the secrets were stored before: in plaintext.
    channels, bots = mongo_collection(Channel._meta.db_table), mongo_collection(ChatBot._meta.db_table)
    channels.update_one(
        {"_id": channel.pk},
        {"$set": {"settings.token": plain["token"], "signing_secret": plain["channel_secret"]}},
    )
    bots.update_one({"_id": bot.pk}, {"$set": {"webhook_signing_secret": plain["bot_secret"]}})
    schema_editor = type("Editor", (), {"connection": connection})()
    migrations = [
        importlib.import_module("channels_app.migrations.0005_encrypted_secrets"),
        importlib.import_module("chatbots.migrations.0007_encrypted_secrets"),
    ]

    for migration in migrations:
        migration.encrypt(apps, schema_editor)
    once = _stored(bot, channel)
    for migration in migrations:
        migration.encrypt(apps, schema_editor)
    assert _stored(bot, channel) == once  # already encrypted: left alone
    assert all(value.startswith(PREFIX) for value in once)
    assert Channel.objects.get(pk=channel.pk).settings.token == plain["token"]
    assert ChatBot.objects.get(pk=bot.pk).webhook_signing_secret == plain["bot_secret"]

    for migration in migrations:
        migration.decrypt(apps, schema_editor)
    assert _stored(bot, channel) == [
        plain["token"],
        plain["channel_secret"],
        plain["channel_previous"],
        plain["bot_secret"],
        plain["bot_previous"],
    ]


def _start(command: list[str], keys: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        MONGO_DB_NAME=settings.DATABASES["default"]["NAME"],
        SECRETS_ENCRYPTION_KEYS=keys,
    )
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.django_db(transaction=True)
def test_a_wrong_key_stops_the_web_server_and_the_worker_at_start_with_one_line() -> None:
    _bot_and_channel()

    web = _start([sys.executable, "-c", "import config.wsgi"], NEW_KEY)
    assert web.returncode == 4
    assert web.stderr.strip().splitlines() == [web.stderr.strip()]
    assert web.stderr.startswith(f"configuration error: {VARIABLE} cannot decrypt the stored secrets")

    worker = _start([sys.executable, "manage.py", "run_worker"], NEW_KEY)
    assert worker.returncode == 1
    assert f"configuration error: {VARIABLE} cannot decrypt" in worker.stderr
    assert "Traceback" not in worker.stderr

    # The key the secrets were encrypted with, kept second: the web server starts.
    assert _start([sys.executable, "-c", "import config.wsgi"], f"{NEW_KEY},{OLD_KEY}").returncode == 0


def test_make_run_generates_a_local_key_once_and_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devtools import run

    monkeypatch.setattr(run, "DATA", tmp_path / ".data")
    monkeypatch.setattr(run, "ROOT", tmp_path)
    monkeypatch.delenv("SECRETS_ENCRYPTION_KEYS")
    run.ensure_local_secrets_key()
    key_file = tmp_path / ".data" / "secrets_encryption_keys"
    key = key_file.read_text()
    assert parse_keys(key) == [key] and key_file.stat().st_mode & 0o777 == 0o600

    run.ensure_local_secrets_key()
    assert key_file.read_text() == key
