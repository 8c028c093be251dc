from __future__ import annotations

from typing import Any

from rest_framework import exceptions, fields, serializers, status

from channels_app.kinds import kind_get
from channels_app.models import URL_MAX_LENGTH, Channel
from channels_app.services import channel_url_check
from chatbots.models import ChatBot
from core.errors import ApplicationError
from core.serializers import ObjectIdField, StrictBooleanField, StrictCharField, strict_name_field

NAME_MAX_LENGTH = Channel._meta.get_field("name").max_length

# What `channel_url_check` accepts, as a pattern the schema can state and the field checks first:
# an absolute http(s) URL (scheme in any case, as urlsplit reads it), an optional userinfo, a
# host that is an ASCII name or a bracketed IPv6 address (optionally with a zone), an optional
# port, then anything but spaces and control characters.
_H = "[0-9A-Fa-f]{1,4}"
_V4_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = f"{_V4_OCTET}(?:\\.{_V4_OCTET}){{3}}"
_V6 = "|".join(
    [
        f"(?:{_H}:){{7}}{_H}",
        f"(?:{_H}:){{1,7}}:",
        f"(?:{_H}:){{1,6}}:{_H}",
        f"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
        f"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
        f"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
        f"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
        f"{_H}:(?::{_H}){{1,6}}",
        f":(?::{_H}){{1,7}}",
        "::",
        f"::(?:[fF]{{4}}:)?{_V4}",
        f"(?:{_H}:){{1,4}}:{_V4}",
    ]
)
_REG_NAME = "[A-Za-z0-9._~!$&'()*+,;=%-]+"
URL_PATTERN = (
    "^[hH][tT][tT][pP][sS]?://"
    "(?:[A-Za-z0-9._~!$&'()*+,;=%:-]*@)?"
    f"(?:{_REG_NAME}|\\[(?:{_V6})(?:%25[A-Za-z0-9._~-]+)?\\])"
    "(?::[0-9]*)?"
    "(?:[/?#][^\\u0000-\\u0020\\u007f]*)?$"
)
URL_PATTERN_MESSAGE = "url must be an absolute http:// or https:// URL, without spaces or control characters"


def url_field(**kwargs: Any) -> StrictCharField:
    return StrictCharField(
        max_length=URL_MAX_LENGTH,
        pattern=URL_PATTERN,
        pattern_message=URL_PATTERN_MESSAGE,
        help_text="Where bot replies (and employees' messages written here) are POSTed, as "
        '`{"type": "message", ...}` (and, with `typing_events`, the typing events). '
        f"Absolute http(s) URL, at most {URL_MAX_LENGTH} characters. Unless `CHANNEL_ALLOW_PRIVATE_URLS` "
        "is set, a URL whose host is (or resolves to) a private, loopback or other non-public address is refused "
        "with a 400.",
        **kwargs,
    )


# Who may read a channel's token: whoever may change the channel, as in the admin. The token
# proves to the channel's receiver that a POST comes from us, so a reader who may not change
# the channel does not get it.
CHANNEL_CHANGE_PERMISSION = "channels_app.change_channel"
TYPING_EVENTS_HELP = (
    'Also POST `{"type": "typing", "chat_id", "state": "on"}` to `url` when the bot starts writing a reply, '
    'and `"state": "off"` when it decides not to reply after all (the LLM failed, an operator took the chat '
    "over). Signed like replies; best effort: never retried, never delaying a reply, at most one `on` per "
    "chat every 5 s. Off by default. A channel must ignore types and fields it does not know."
)
DELIVERY_AUTH_HELP = (
    "Sent with every bot reply and employee's message delivered to `url` (`x-chat_auth_token: Bearer <token>`), "
    "so the channel can check that they come from us."
)


class ChannelSerializer(serializers.Serializer):
    """A channel, in the existing contract: the stored `settings: {url, token}` appear flat as
    `url` and `token`. `token` only for a user who may change the channel (`token_visible`)."""

    # Built by hand rather than from the model because of that flattening.

    id = ObjectIdField(read_only=True)
    name = serializers.CharField(read_only=True)
    chat_bot_id = ObjectIdField(read_only=True)
    url = serializers.CharField(source="settings.url", read_only=True)
    kind = serializers.CharField(
        read_only=True,
        help_text="How the channel receives and delivers: `webhook` (this contract) or a native kind "
        "(`POST /api/channels/kinds/<kind>/` creates one).",
    )
    options = serializers.SerializerMethodField(help_text="The kind's own settings (never a secret).")
    is_active = serializers.BooleanField(read_only=True)
    typing_events = serializers.BooleanField(read_only=True, help_text=TYPING_EVENTS_HELP)
    # Output only (no view reads input with this serializer), but not `read_only`: drf-spectacular
    # marks every read-only field required, and this one may be absent.
    token = serializers.CharField(
        source="settings.token",
        required=False,
        help_text=f"{DELIVERY_AUTH_HELP} Only for users who may change the channel (`change_channel`); "
        "left out for others.",
    )

    def get_options(self, instance: Channel) -> dict[str, Any]:
        return kind_get(instance.kind).public_options(instance)

    def token_visible(self) -> bool:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return bool(user is not None and user.has_perm(CHANNEL_CHANGE_PERMISSION))

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        # A native kind's token is its service's credential: given once, never shown again.
        if not self.token_visible() or not kind_get(instance.kind).token_visible:
            data.pop("token", None)
        return data


class ChannelWithTokenSerializer(ChannelSerializer):
    """A channel with its token: the answers to writes that need `change_channel` (update,
    rotate), and to the create, which shows its creator the new secrets."""

    token = serializers.CharField(source="settings.token", read_only=True, help_text=DELIVERY_AUTH_HELP)

    def token_visible(self) -> bool:
        return True


class ChannelUpdatedSerializer(ChannelWithTokenSerializer):
    """An update's answer: with the token, except for a native kind's channel, which has none of
    ours to show (its service's credential is never shown again)."""

    # Not `read_only`, so that the schema does not require it.
    token = serializers.CharField(
        source="settings.token", required=False, help_text=f"{DELIVERY_AUTH_HELP} Absent for a native kind."
    )


def _check_url(url: str) -> str:
    """The services' rule for channel URLs, its error as this field's."""
    try:
        return channel_url_check(url)
    except ApplicationError as exc:
        raise serializers.ValidationError(exc.message) from None


class BotIdField(ObjectIdField):
    """A bot's id, as ObjectIdField. The browsable API's form offers the bots by name (a
    select) rather than a box for 24 hexadecimal characters."""

    html_cutoff = 1000

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("style", {"base_template": "select.html"})
        super().__init__(**kwargs)

    def iter_options(self) -> Any:
        bots = ChatBot.objects.order_by("name", "id").only("id", "name")[: self.html_cutoff]
        return fields.iter_options(
            {str(bot.pk): f"{bot.name} ({bot.pk})" for bot in bots},
            cutoff=self.html_cutoff,
            cutoff_text=f"More than {self.html_cutoff} bots: give the id in Raw data",
        )


UNKNOWN_CHAT_BOT = "Unknown chat bot."
BOT_CANNOT_CHANGE = "A channel cannot move to another bot."


class ChannelBotConflict(exceptions.APIException):
    """A well-formed request that the channel's state refuses: it belongs to another bot."""

    status_code = status.HTTP_409_CONFLICT


class ChannelCreateSerializer(serializers.Serializer):
    name = strict_name_field(max_length=NAME_MAX_LENGTH, help_text="No control characters; not blank.")
    chat_bot_id = BotIdField(help_text="An existing bot's id; a well-formed id of no bot is a 404 naming this field.")
    url = url_field()
    # `initial`: the browsable API's checkbox starts ticked, as a create without it is active.
    is_active = StrictBooleanField(required=False, default=True, initial=True)
    typing_events = StrictBooleanField(required=False, default=False, initial=False, help_text=TYPING_EVENTS_HELP)

    def validate_url(self, value: str) -> str:
        return _check_url(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Once the body is valid (a malformed one is a 400): the bot it names must exist. Its
        # absence is not a fault of the body's form, which the schema states, but of what the
        # id refers to: a 404, as for an unknown id in a path, naming the field.
        chat_bot = ChatBot.objects.filter(pk=attrs["chat_bot_id"]).first()
        if chat_bot is None:
            raise exceptions.NotFound({"chat_bot_id": [UNKNOWN_CHAT_BOT]})
        return {**attrs, "chat_bot_id": chat_bot}


class ChannelUpdateSerializer(serializers.Serializer):
    """PUT needs name and url; PATCH any subset. The bot is fixed at creation: a body that
    echoes the current chat_bot_id (clients often send back what they read) is accepted."""

    name = strict_name_field(max_length=NAME_MAX_LENGTH, help_text="No control characters; not blank.")
    url = url_field()
    is_active = StrictBooleanField(required=False)
    typing_events = StrictBooleanField(required=False, help_text=TYPING_EVENTS_HELP)
    chat_bot_id = ObjectIdField(
        required=False,
        help_text="Cannot change; accepted only if equal to the current, else a 409 naming this field.",
    )

    def validate_url(self, value: str) -> str:
        return _check_url(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Once the body is valid: another bot's id conflicts with the channel's state (409).
        channel: Channel = self.context["channel"]
        if "chat_bot_id" in attrs and attrs["chat_bot_id"] != channel.chat_bot_id:
            raise ChannelBotConflict({"chat_bot_id": [BOT_CANNOT_CHANGE]})
        return attrs

    def to_representation(self, instance: Channel) -> dict[str, Any]:
        # The browsable API's PUT/PATCH forms start from the channel's current values, which
        # live flat here and under `settings` in the model.
        return {
            "name": instance.name,
            "url": instance.settings.url,
            "is_active": instance.is_active,
            "typing_events": instance.typing_events,
            "chat_bot_id": str(instance.chat_bot_id),
        }


class ChannelFilterSerializer(serializers.Serializer):
    chat_bot_id = ObjectIdField(required=False, help_text="Only this bot's channels.")
    active = serializers.BooleanField(required=False, help_text="`true` or `false`: only (in)active channels.")


# --- Signing secrets (Standard Webhooks): shown in these two responses only, never in reads ---

MAX_SIGNING_OVERLAP_MINUTES = 7 * 24 * 60


class ChannelCreatedSerializer(ChannelWithTokenSerializer):
    signing_secret = serializers.CharField(
        read_only=True,
        help_text="`whsec_…`: replies carry Standard Webhooks `webhook-signature` headers made with it. "
        "Shown only here and when rotated.",
    )


class SigningSecretRotateSerializer(serializers.Serializer):
    overlap_minutes = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_SIGNING_OVERLAP_MINUTES,
        help_text="How long replies are signed with the old secret too (default CHANNEL_SIGNING_OVERLAP_S); "
        "0 drops it at once.",
    )


class ChannelSigningSecretSerializer(ChannelCreatedSerializer):
    previous_signing_secret_until = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="Until then replies are signed with the previous secret as well; null: not at all.",
    )


class KindChannelCreateSerializer(serializers.Serializer):
    """What every native kind's create takes; each kind's package adds its own fields and
    `channels_app.kinds.base.ChannelKind.configure` reads them."""

    name = strict_name_field(max_length=NAME_MAX_LENGTH, help_text="No control characters; not blank.")
    chat_bot_id = BotIdField(help_text="An existing bot's id; a well-formed id of no bot is a 404 naming this field.")
    is_active = StrictBooleanField(required=False, default=True, initial=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        chat_bot = ChatBot.objects.filter(pk=attrs["chat_bot_id"]).first()
        if chat_bot is None:
            raise exceptions.NotFound({"chat_bot_id": [UNKNOWN_CHAT_BOT]})
        return {**attrs, "chat_bot_id": chat_bot}


class KindChannelCreatedSerializer(ChannelSerializer):
    """A native kind's channel, as its create answers: no token (the service's credential is
    never shown again) and no signing secret (its replies are not signed)."""

    setup_problem = serializers.CharField(
        read_only=True,
        default="",
        help_text='"" when the channel is ready; else what to fix (a webhook not registered).',
    )
