"""Raw collection access for the reply pipeline: what the webhook writes and what the worker
claims, reads and records. Every rule two processes could race on rests on a unique index or
a single-document atomic update (MongoDB has no cross-document transactions here):

- one dialogue per (bot, channel, chat_id): the unique index; the first message creates it;
- one copy per (dialogue, message_id): the insert decides, a DuplicateKeyError is a duplicate;
- one reply per customer message: the unique (dialogue, in_reply_to) index on replies;
- one worker per dialogue at a time: a lease (`claim_until`) with a fencing token
  (`claim_token`), taken by one update that matches only while the dialogue is free; the
  dialogue's replies are generated and delivered in order by whoever holds it;
- one recorded outcome per attempt: a reply's outcome is written only where its
  `claim_token` is still the writer's, so a holder whose lease expired cannot overwrite a
  newer holder's outcome.

No `find_one_and_update` anywhere: the embedded server runs every findAndModify as a scan of
the whole collection, where `update_one` by `_id` and a `find` on an index stay index
look-ups (docs/internals.md, "Known quirks of the embedded server").

The worker's fields on the dialogue (`work_due_at`, `claim_until`, `claim_token`, `done_seq`,
`parked`) are not Django model fields; see `dialogues.models.Dialogue`.

Callers import from the module that holds what they need, by concern:

- `collections`: the two collections, the delivery states they share, the clock;
- `reservation`: positions in a dialogue (the webhook's and an operator's messages), and the
  compare-and-set on `last_seq` every write that depends on them goes through;
- `counters`: dialogues per bot (WEBHOOK_MAX_DIALOGUES_PER_BOT);
- `messages`: storing and reading messages by key and by position;
- `claims`: the worker's leases on dialogues;
- `replies`: generated replies and their fenced delivery outcomes;
- `handoff`: an operator taking a dialogue over, the bot's pause;
- `recovery`: work made due again (orphans, parked dialogues, "redeliver now").
"""
