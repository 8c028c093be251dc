from __future__ import annotations

from datetime import UTC, datetime

from bson import ObjectId
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_mongodb_backend.fields import ArrayField, EmbeddedModelArrayField, ObjectIdField
from django_mongodb_backend.models import EmbeddedModel

from channels_app.models import Channel, DeliveryState
from chatbots.models import ChatBot

ID_MAX_LENGTH = 256
# `Dialogue.paused_until` of a bot paused "until resumed": a date so far ahead that "paused"
# is always the one range condition `paused_until > now` (in the webhook's reservation, in
# list filters), with no second field or `$or` beside it.
PAUSED_INDEFINITELY = datetime(9999, 1, 1, tzinfo=UTC)
# Every pause ends after this date, and a dialogue never paused has no date (or null): the
# "paused" index holds only dialogues that were paused at some time, so the updates of every
# other dialogue (every message's reservation) never write it. A query `paused_until > now`
# lies inside its filter, so MongoDB uses it.
PAUSE_INDEX_FROM = datetime(2000, 1, 1, tzinfo=UTC)


class Dialogue(models.Model):
    """One conversation. In the existing contract `chat_id` is the id of the channel, so the
    key (chat_bot, channel, chat_id) is the same as (chat_bot, chat_id); with the optional
    `channel_id` extension one channel carries many chat_ids, each its own dialogue.

    The worker's bookkeeping lives in the same document but outside this model, so that no
    `save()` can write a stale copy of it (`dialogues.store` owns it): `work_due_at` (set
    while something is owed, absent otherwise, so its sparse index holds only due
    dialogues), `claim_until` and `claim_token` (the worker's lease and fencing token),
    `done_seq` (every position up to it is settled) and `parked` (why its work waits)."""

    chat_bot_id: ObjectId  # the ForeignKey's column (django-stubs cannot infer it for ObjectId keys)
    channel_id: ObjectId
    chat_bot = models.ForeignKey(
        ChatBot, on_delete=models.CASCADE, related_name="dialogues", verbose_name=_("chat bot")
    )
    # No index of its own: `dialogue_channel_recent` (channel, -last_message_at) serves every
    # look-up by channel, and each index costs every write of the dialogue.
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="dialogues", verbose_name=_("channel"), db_index=False
    )
    chat_id = models.CharField(_("chat id"), max_length=ID_MAX_LENGTH)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_message_at = models.DateTimeField(_("last message time"), null=True, blank=True)
    # Kept by atomic $inc on every stored message, so lists never count a collection.
    message_count = models.PositiveIntegerField(_("messages"), default=0)
    # The last sequence number handed out to this dialogue's messages (atomic $inc in the
    # same upsert that finds the dialogue). See Message.seq.
    last_seq = models.PositiveBigIntegerField(default=0, editable=False)
    # Hand-off: the bot does not answer this dialogue's customers until then. Null or past:
    # the bot is active (a pause ends by itself, nothing has to run when it does);
    # PAUSED_INDEFINITELY: until an operator gives the dialogue back. Written only by single
    # atomic updates (`dialogues.store`), never by `save()`.
    paused_until = models.DateTimeField(_("bot paused until"), null=True, blank=True, editable=False)
    # The bot asked for a human (a hand-off keyword, the model's `handoff_to_human` tool): why,
    # and when. Written with the pause by `dialogues.store.handoff.dialogue_handoff_request`.
    handoff_reason = models.CharField(_("hand-off reason"), max_length=500, blank=True, default="", editable=False)
    handoff_requested_at = models.DateTimeField(_("hand-off asked for"), null=True, blank=True, editable=False)
    # The operators' inbox (`dialogues.store.attention`): since when the dialogue needs a human
    # (absent when it does not, so the partial index holds only the inbox) and why
    # (ATTENTION_REASONS); who handles it, and up to which position they have seen it.
    attention_at = models.DateTimeField(_("needs a human since"), null=True, blank=True, editable=False)
    attention_reasons = ArrayField(
        models.CharField(max_length=32), verbose_name=_("why"), null=True, blank=True, editable=False
    )
    assignee_id = ObjectIdField(_("assigned to"), null=True, blank=True, editable=False)
    assignee_name = models.CharField(_("assigned to"), max_length=150, blank=True, default="", editable=False)
    seen_seq = models.PositiveBigIntegerField(_("seen up to"), default=0, editable=False)

    class Meta:
        verbose_name = _("dialogue")
        verbose_name_plural = _("dialogues")
        ordering = ["-last_message_at"]
        # One dialogue per conversation: the unique index `uniq_dialogue_chat` on (chat_id,
        # chat_bot_id, channel_id) is created by migration 0011 rather than declared here, because
        # the backend makes every UniqueConstraint partial and the embedded server never reads
        # through a partial unique index; whole, it serves the webhook's look-up of the dialogue
        # too, so no separate `chat_id` index is written on every update (deploy/MONGODB.md).
        indexes = [
            models.Index(fields=["channel", "-last_message_at"], name="dialogue_channel_recent"),
            models.Index(fields=["-last_message_at"], name="dialogue_recent"),
            # The "paused" filters: only paused dialogues lie past now; those paused until resumed
            # (one value) are walked most recently active first
            # (`dialogues.selectors_lists._paused_places`).
            models.Index(
                fields=["paused_until", "-last_message_at"],
                name="dialogue_paused_recent",
                condition=Q(paused_until__gt=PAUSE_INDEX_FROM),
            ),
            # The inbox: only dialogues that need a human.
            models.Index(
                fields=["attention_at"], name="dialogue_attention", condition=Q(attention_at__gt=PAUSE_INDEX_FROM)
            ),
        ]

    def __str__(self) -> str:
        return str(_("Dialogue %(chat_id)s") % {"chat_id": self.chat_id})

    @property
    def is_paused(self) -> bool:
        return self.paused_until is not None and self.paused_until > timezone.now()

    @property
    def pause_ends_at(self) -> datetime | None:
        """When the pause ends by itself: None while the bot is active, and while it is paused
        until resumed."""
        if not self.is_paused or self.paused_until is None or self.paused_until >= PAUSED_INDEFINITELY:
            return None
        return self.paused_until


# A message's attachments (the webhook's `attachments`): links to files the channel keeps, never
# their content. Bounded so that ten of them stay far below a message's document size.
ATTACHMENTS_MAX = 10
ATTACHMENT_URL_MAX_LENGTH = 2048
ATTACHMENT_MIME_TYPE_MAX_LENGTH = 127  # RFC 6838: type and subtype of at most 127 characters
ATTACHMENT_NAME_MAX_LENGTH = 255
ATTACHMENT_SIZE_MAX = 2 * 1024**3  # 2 GiB


class Attachment(EmbeddedModel):
    """A file sent with a message, stored inside the message as `{url, mime_type, name, size}`.
    Only `url` is always known; the rest is what the channel said, or null."""

    url = models.CharField(_("URL"), max_length=ATTACHMENT_URL_MAX_LENGTH)
    mime_type = models.CharField(_("type"), max_length=ATTACHMENT_MIME_TYPE_MAX_LENGTH, null=True, blank=True)
    name = models.CharField(_("name"), max_length=ATTACHMENT_NAME_MAX_LENGTH, null=True, blank=True)
    size = models.PositiveBigIntegerField(_("size (bytes)"), null=True, blank=True)

    def __str__(self) -> str:
        return self.name or self.url

    @property
    def link_url(self) -> str:
        """The URL when it may be a link: https only (the webhook accepts nothing else; this
        keeps a `javascript:` or plain-http value written some other way out of the admin)."""
        return self.url if self.url.startswith("https://") else ""


class Message(models.Model):
    """One message, in its own collection (an array in the dialogue would hit the 16 MB
    document limit and rewrite the dialogue on every append)."""

    class Role(models.TextChoices):
        # Labels in the operators' words (the webhook's too); the stored values stay.
        ASSISTANT = "ASSISTANT", _("bot reply")
        SYSTEM = "SYSTEM", _("system")
        USER = "USER", _("customer")
        EMPLOYEE = "EMPLOYEE", _("employee")
        # An operator's private note: shown in the transcript, never sent, never the LLM's.
        NOTE = "NOTE", _("note")

    class ReplyState(models.TextChoices):
        NONE = "", _("no reply expected")
        AWAITING = "awaiting", _("awaiting reply")
        REPLIED = "replied", _("replied")
        # The LLM kept failing (LLM_MAX_ATTEMPTS, or an error no retry fixes) and the bot has
        # no fallback text: no reply will be sent.
        FAILED = "failed", _("no reply (LLM failed)")
        # The customer wrote while the bot was paused in the dialogue (an operator had taken
        # over): stored, never answered, decided when the message came in.
        PAUSED = "paused", _("no reply (bot paused)")

    # No single-field indexes on the foreign keys: the compound indexes below start with
    # dialogue, and every extra index costs each insert on the webhook path.
    dialogue_id: ObjectId  # the ForeignKey's column (django-stubs cannot infer it for ObjectId keys)
    chat_bot_id: ObjectId
    channel_id: ObjectId
    dialogue = models.ForeignKey(
        Dialogue, on_delete=models.CASCADE, related_name="messages", verbose_name=_("dialogue"), db_index=False
    )
    # Denormalised from the dialogue so that delivery lists filter without a join.
    chat_bot = models.ForeignKey(
        ChatBot, on_delete=models.CASCADE, related_name="+", verbose_name=_("chat bot"), db_index=False
    )
    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="+", verbose_name=_("channel"), db_index=False
    )
    message_id = models.CharField(_("message id"), max_length=ID_MAX_LENGTH)
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    # "" when the message is only attachments.
    text = models.TextField(_("text"))
    # Null on messages stored before attachments existed (the field was added without rewriting
    # every message: migration 0012); readers take null for none.
    attachments = EmbeddedModelArrayField(Attachment, null=True, blank=True, default=list, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    in_reply_to = models.CharField(_("in reply to"), max_length=ID_MAX_LENGTH, null=True, blank=True)
    # Position in the dialogue: a customer message reserves two numbers (its own and its
    # reply's), so the LLM context is an exact range read on (dialogue, seq) whatever the
    # dialogue's size. Gaps are normal (duplicates, replies not generated yet).
    seq = models.PositiveBigIntegerField(_("sequence"), null=True, blank=True, editable=False)

    # USER messages: whether the reply has been generated yet (never generated -> retried).
    reply_state = models.CharField(
        _("reply state"), max_length=16, choices=ReplyState.choices, blank=True, default=ReplyState.NONE
    )

    # ASSISTANT messages: delivery to the channel.
    delivery_state = models.CharField(
        _("delivery state"), max_length=16, choices=DeliveryState.choices, null=True, blank=True
    )
    delivery_attempts = models.PositiveIntegerField(_("delivery attempts"), default=0)
    last_error = models.CharField(_("last error"), max_length=500, blank=True, default="")
    last_status_code = models.PositiveIntegerField(_("last status code"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    # A lease: whoever holds an unexpired claim is the only one delivering this reply.
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The fencing token of the claim that may record this reply's next outcome: an outcome is
    # written only where the token is still the writer's own, so a holder whose lease expired
    # can never overwrite what a newer holder recorded.
    claim_token = models.CharField(max_length=32, blank=True, default="", editable=False)
    # A dead reply that an operator redelivers gets one more attempt each time.
    delivery_revivals = models.PositiveIntegerField(_("redeliveries of a dead reply"), default=0)

    # W3C Trace Context (`core.tracing`): a customer message keeps the trace it came in with
    # (or a new one), its reply continues that trace, and the reply's POST to the channel and
    # the LLM call carry it on. Validated before it is stored; bounded by the format.
    traceparent = models.CharField(_("traceparent"), max_length=55, blank=True, default="", editable=False)
    tracestate = models.CharField(_("tracestate"), max_length=512, blank=True, default="", editable=False)

    # USER messages: generation attempts (LLM errors are retried with backoff).
    llm_attempts = models.PositiveIntegerField(_("LLM attempts"), default=0)
    # ASSISTANT messages: what produced the reply and what it cost.
    llm_backend = models.CharField(_("LLM backend"), max_length=64, blank=True, default="")
    llm_model = models.CharField(_("LLM model"), max_length=200, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), null=True, blank=True)
    llm_latency_ms = models.PositiveIntegerField(_("LLM latency (ms)"), null=True, blank=True)

    # EMPLOYEE messages an operator wrote here (admin or API): the staff user. Null for
    # everything else, including employee messages that came in from the channel. Not a
    # foreign key, so deleting a user rewrites no messages; the username stays readable.
    author_id = ObjectIdField(_("author id"), null=True, blank=True, editable=False)
    author_username = models.CharField(_("author"), max_length=150, null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        constraints = [
            # Deduplication. It starts with the dialogue, the messages' shard key
            # (deploy/MONGODB.md, "Sharding"), so look-ups by message id need their own index.
            models.UniqueConstraint(fields=["dialogue", "message_id"], name="uniq_message_per_dialogue"),
            # One reply per incoming message, even when a duplicate resumes work at the same
            # moment as the original.
            models.UniqueConstraint(
                fields=["dialogue", "in_reply_to"],
                condition=Q(role="ASSISTANT"),
                name="uniq_reply_per_message",
            ),
        ]
        indexes = [
            # The history's order (created_at, id) in full, so a page of a long dialogue is
            # read straight off the index with no sort of the whole dialogue.
            models.Index(fields=["dialogue", "created_at", "id"], name="message_dialogue_order"),
            models.Index(fields=["dialogue", "seq"], name="message_dialogue_seq"),
            # The admin's Deliveries list, newest first, read in windows of created_at per state; and
            # the few replies owed in a state, whose retry time is checked beside it (recovery).
            models.Index(fields=["delivery_state", "created_at"], name="message_delivery_recent"),
            # The same, for one channel's replies.
            models.Index(fields=["channel", "delivery_state", "created_at"], name="message_channel_delivery"),
            models.Index(fields=["reply_state", "created_at"], name="message_reply_queue"),
            models.Index(fields=["message_id"], name="message_message_id"),
            # A list page's failed and dead replies per dialogue, whatever its length: only the
            # replies in those states are in these (a reply delivered at once never writes them).
            models.Index(
                fields=["dialogue"], name="message_failed_by_dialogue", condition=Q(delivery_state=DeliveryState.FAILED)
            ),
            models.Index(
                fields=["dialogue"], name="message_dead_by_dialogue", condition=Q(delivery_state=DeliveryState.DEAD)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.message_id}"


class DeliveryManager(models.Manager["Delivery"]):
    def get_queryset(self) -> models.QuerySet[Delivery]:
        return (
            super()
            .get_queryset()
            .filter(
                # Operators' messages are delivered like the bot's replies, and can die alike.
                role__in=[Message.Role.ASSISTANT, Message.Role.EMPLOYEE],
                delivery_state__in=[
                    DeliveryState.PENDING,
                    DeliveryState.FAILED,
                    DeliveryState.DEAD,
                    DeliveryState.PARKED,
                ],
            )
        )


class Delivery(Message):
    """The operators' view of replies (the bot's and operators') not yet delivered (pending,
    failed, parked or dead)."""

    objects = DeliveryManager()  # type: ignore[misc]

    class Meta:
        proxy = True
        verbose_name = _("reply not yet delivered")
        verbose_name_plural = _("deliveries")
