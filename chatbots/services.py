from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext
from pymongo.errors import DuplicateKeyError, PyMongoError
from rest_framework import status
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chatbots.models import ChatBot, SignedWebhookId
from core.errors import ApplicationError, Conflict, NotFound
from core.fields import encrypted_compare_and_set
from core.mongo import mongo_collection
from core.tokens import (
    display_prefix,
    generate_bot_secret,
    generate_signing_secret,
    hash_secret,
    secrets_match,
    signing_secret_rotation,
    signing_secrets_current,
)

# The bot's LLM settings (blank or null: the platform's default).
LLM_SETTINGS = frozenset(
    {
        "system_prompt",
        "llm_provider_id",
        "llm_model",
        "temperature",
        "max_output_tokens",
        "context_messages",
        "fallback_text",
        "vision",
    }
)
# When the bot steps aside for a human (minutes; 0: never).
HANDOFF_SETTINGS = frozenset(
    {
        "pause_after_employee_minutes",
        "pause_after_operator_reply_minutes",
        "handoff_keywords",
        "handoff_tool",
        "handoff_text",
    }
)
# One reply per message, or one per burst of messages.
REPLY_SETTINGS = frozenset({"reply_policy", "burst_quiet_ms", "burst_max_wait_ms"})
# What the webhook demands of the channels' requests.
SECURITY_SETTINGS = frozenset({"require_signed_webhooks"})
BOT_SETTINGS = LLM_SETTINGS | REPLY_SETTINGS | HANDOFF_SETTINGS | SECURITY_SETTINGS


# Whether an LLM provider exists: `llm` (above this app) registers it when it starts.
_llm_provider_exists: Callable[[ObjectId], bool] | None = None


def register_llm_provider_check(exists: Callable[[ObjectId], bool]) -> None:
    global _llm_provider_exists
    _llm_provider_exists = exists


def llm_provider_known(provider_id: ObjectId) -> bool:
    """Whether a bot may name this LLM provider (true when no `llm` app is installed to ask)."""
    return _llm_provider_exists is None or _llm_provider_exists(provider_id)


def _check_llm_settings(llm_settings: dict[str, Any]) -> None:
    unknown = set(llm_settings) - BOT_SETTINGS
    if unknown:
        raise TypeError(f"not settings of a bot: {sorted(unknown)}")


def chatbot_name_key(name: str) -> str:
    """What makes two names the same: case does not tell bots apart ("Shop", "shop")."""
    return name.casefold()


def _name_taken(name: str) -> ApplicationError:
    # A conflict with what is stored (409), not a malformed body: the same request is valid
    # once the other bot is renamed.
    return Conflict(
        gettext("Another bot is already called “%(name)s”: choose a name that tells them apart.") % {"name": name}
    )


def chatbot_name_check(*, name: str, chat_bot: ChatBot | None = None) -> None:
    """Raises `ApplicationError` when another bot has this name, so a form can show it beside
    the field. The rule itself is the unique index on `name_key`, which the writes below meet
    whatever this check saw: two requests can name a bot at the same moment."""
    clash = ChatBot.objects.filter(name_key=chatbot_name_key(name))
    if chat_bot is not None and chat_bot.pk is not None:
        clash = clash.exclude(pk=chat_bot.pk)
    if clash.exists():
        raise _name_taken(name)


def _is_name_clash(exc: IntegrityError) -> bool:
    # The backend raises a bare IntegrityError from the driver's DuplicateKeyError, whose
    # message names the index that refused the write.
    cause = exc.__cause__
    return isinstance(cause, PyMongoError) and "name_key" in str(cause)


def chatbot_create(*, name: str, **llm_settings: Any) -> tuple[ChatBot, str]:
    """Creates a bot. Returns it with its secret in plaintext: the only time it exists.
    Raises `ApplicationError` (400) when another bot has this name."""
    _check_llm_settings(llm_settings)
    secret = generate_bot_secret()
    try:
        chat_bot = ChatBot.objects.create(
            name=name,
            name_key=chatbot_name_key(name),
            secret_hash=hash_secret(secret),
            secret_prefix=display_prefix(secret),
            webhook_signing_secret=generate_signing_secret(),
            **llm_settings,
        )
    except IntegrityError as exc:
        if _is_name_clash(exc):
            raise _name_taken(name) from exc
        raise
    return chat_bot, secret


def chatbot_update(*, chat_bot: ChatBot, name: str | None = None, **llm_settings: Any) -> ChatBot:
    """Writes the name and the LLM settings given; what is left out keeps its value. Raises
    `ApplicationError` (400) when another bot has the new name."""
    _check_llm_settings(llm_settings)
    fields = {**llm_settings}
    if name is not None:
        fields |= {"name": name, "name_key": chatbot_name_key(name)}
    if not fields:
        return chat_bot
    for field, value in fields.items():
        setattr(chat_bot, field, value)
    try:
        chat_bot.save(update_fields=[*fields, "updated_at"])
    except IntegrityError as exc:
        if name is not None and _is_name_clash(exc):
            raise _name_taken(name) from exc
        raise
    return chat_bot


def chatbot_rotate_secret(*, chat_bot: ChatBot, overlap_s: float | None = None) -> str:
    """Replaces the secret. Returns the new plaintext.

    With an overlap (seconds; default BOT_SECRET_OVERLAP_S), the secret being replaced keeps
    working that long, so channels can switch without losing traffic; without, it stops at
    once. Only one previous secret is kept: rotating again during an overlap retires the older
    one at once. The write is conditional on the secret this rotation replaces, so of two
    rotations at the same moment one wins and the other raises `Conflict` (its new secret
    would otherwise be lost, or silently retire the winner's)."""
    if overlap_s is None:
        overlap_s = settings.BOT_SECRET_OVERLAP_S
    secret = generate_bot_secret()
    now = timezone.now()
    replaced = chat_bot.secret_hash
    fields: dict[str, Any] = {
        "secret_hash": hash_secret(secret),
        "secret_prefix": display_prefix(secret),
        "previous_secret_hash": replaced if overlap_s > 0 else None,
        "previous_secret_until": now + timedelta(seconds=overlap_s) if overlap_s > 0 else None,
        "updated_at": now,
    }
    if not ChatBot.objects.filter(pk=chat_bot.pk, secret_hash=replaced).update(**fields):
        raise Conflict("The secret was rotated by another request at the same time; fetch the bot and try again")
    for field, value in fields.items():
        setattr(chat_bot, field, value)
    return secret


def chatbot_delete(*, chat_bot: ChatBot) -> None:
    """Deletes the bot with its channels, dialogues and messages (they cannot outlive it:
    nothing could authenticate to them any more)."""
    with transaction.atomic():  # a no-op on MongoDB; the cascade is idempotent if repeated
        chat_bot.delete()


def chatbot_authenticate(*, secret: str) -> ChatBot | None:
    """The bot whose secret this is, or None. Looked up by hash (unique index), then compared
    in constant time. A miss is looked up once more among previous secrets still in their
    overlap (a second unique index), so a wrong secret costs two indexed look-ups at most."""
    if not secret:
        return None
    digest = hash_secret(secret)
    chat_bot = ChatBot.objects.filter(secret_hash=digest).first()
    if chat_bot is not None and secrets_match(digest, chat_bot.secret_hash):
        return chat_bot
    chat_bot = ChatBot.objects.filter(previous_secret_hash=digest).first()
    if (
        chat_bot is not None
        and chat_bot.previous_secret_hash is not None
        and chat_bot.previous_secret_until is not None
        and chat_bot.previous_secret_until > timezone.now()
        and secrets_match(digest, chat_bot.previous_secret_hash)
    ):
        return chat_bot
    return None


# --- Signed inbound webhooks (Standard Webhooks) ------------------------------------------

# The longest `webhook-id` kept by the replay guard; longer ones are refused.
WEBHOOK_ID_MAX_LENGTH = 256
# The signature's timestamp window is the library's: 5 minutes either way. The replay guard
# keeps an id a little longer, so a replay is refused by one or the other, never by neither.
WEBHOOK_REPLAY_KEEP_S = 10 * 60

SIGNATURE_REQUIRED = (
    "This bot requires signed webhooks: webhook-id, webhook-timestamp and webhook-signature headers are required"
)
SIGNATURE_INVALID = "Invalid webhook signature"
SIGNATURE_TIMESTAMP_INVALID = "webhook-timestamp must be a Unix time (seconds) within 5 minutes of the server's clock"
WEBHOOK_ID_INVALID = f"webhook-id must be 1-{WEBHOOK_ID_MAX_LENGTH} characters"
WEBHOOK_ID_REPLAYED = "This webhook-id was already accepted; a replayed request is refused"


def chatbot_webhook_signing_secrets(*, chat_bot: ChatBot, now: datetime | None = None) -> list[str]:
    """The secrets a signature may be made with now: the current one and, during a rotation's
    overlap, the previous one."""
    return signing_secrets_current(
        current=chat_bot.webhook_signing_secret,
        previous=chat_bot.previous_webhook_signing_secret,
        previous_until=chat_bot.previous_webhook_signing_secret_until,
        now=now or timezone.now(),
    )


def chatbot_webhook_signing_secret_rotate(*, chat_bot: ChatBot, overlap_s: float = 0.0) -> str:
    """Gives the bot a new webhook signing secret and returns it (the only time it is shown).
    For `overlap_s` signatures made with the old one are accepted too; 0 drops it at once.
    Compare-and-set on the secret it replaces: of two rotations at once, one raises Conflict."""
    old = chat_bot.webhook_signing_secret
    new, fields = signing_secret_rotation(
        field="webhook_signing_secret", old=old, overlap_s=overlap_s, now=timezone.now()
    )
    swapped = encrypted_compare_and_set(
        model=ChatBot, pk=chat_bot.pk, field="webhook_signing_secret", expected=old, values=fields
    )
    if not swapped:
        if not ChatBot.objects.filter(pk=chat_bot.pk).exists():
            raise NotFound("Not found.")
        raise Conflict("The webhook signing secret was rotated at the same time by another request; try again")
    for field, value in fields.items():
        setattr(chat_bot, field, value)
    return new


def _unauthorized(message: str) -> ApplicationError:
    return ApplicationError(message, status=status.HTTP_401_UNAUTHORIZED)


def webhook_signature_verify(*, chat_bot: ChatBot, body: bytes, headers: Mapping[str, str]) -> str:
    """Checks a Standard Webhooks signature over exactly the bytes received, made with one of
    the bot's signing secrets, with a timestamp within 5 minutes. Returns the `webhook-id`;
    raises a 401 ApplicationError otherwise. Costs no database work."""
    signed = {name: headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    if not all(signed.values()):
        raise _unauthorized(SIGNATURE_REQUIRED)
    webhook_id = signed["webhook-id"]
    if len(webhook_id) > WEBHOOK_ID_MAX_LENGTH:
        raise _unauthorized(WEBHOOK_ID_INVALID)
    error = SIGNATURE_INVALID
    for secret in chatbot_webhook_signing_secrets(chat_bot=chat_bot):
        try:
            Webhook(secret).verify(body, signed, json_parse=False)
        except WebhookVerificationError as exc:
            if "timestamp" in str(exc).lower() or "Invalid Signature Headers" in str(exc):
                raise _unauthorized(SIGNATURE_TIMESTAMP_INVALID) from None
            continue
        except (ValueError, UnicodeDecodeError, TypeError):
            # The library unpacks `v1,<base64>` and decodes the body without guarding:
            # a malformed signature list (or a body that is not UTF-8) is simply not valid.
            continue
        return webhook_id
    raise _unauthorized(error)


def _replay_collection() -> Any:
    return mongo_collection(SignedWebhookId._meta.db_table)


def webhook_id_claim(*, chat_bot: ChatBot, webhook_id: str) -> None:
    """Records a verified `webhook-id` for the bot: one insert, which the unique index lets
    exactly one request win. A replay (or the loser of two identical requests at once) gets
    409 Conflict."""
    document = {
        "chat_bot_id": chat_bot.pk,
        "webhook_id": webhook_id,
        "expires_at": timezone.now() + timedelta(seconds=WEBHOOK_REPLAY_KEEP_S),
    }
    try:
        _replay_collection().insert_one(document)
    except DuplicateKeyError:
        raise Conflict(WEBHOOK_ID_REPLAYED) from None


def webhook_id_release(*, chat_bot: ChatBot, webhook_id: str) -> None:
    """Forgets a claimed id whose request then failed (a 400 body, the database down), so the
    sender's retry, which carries the same `webhook-id`, is not refused as a replay."""
    _replay_collection().delete_one({"chat_bot_id": chat_bot.pk, "webhook_id": webhook_id})
