"""What the database server did, read from the server itself: nothing in the app is wrapped.

`serverStatus().opcounters` gives totals by type; the `top` command gives counts and
server-side time by collection and type, which tells the webhook's writes from the worker's.
On secantusd 0.7.0b3 (checked by hand): `top` counts a findAndModify under `commands` of its
collection (opcounters count it under `update`), a find under `queries`, an insert or update
under `insert` / `update`; a bulk write of one insert and one update counts one of each.
Commands that name no collection (hello, ping, endSessions, serverStatus) appear only in
opcounters. It counts commands, not documents: an `insert_many` or an `update_many` is one.

Index entries written (`index_entries`): each insert or update `top` counted on a collection,
times the indexes of that collection (`index_weights`: `_id` and every other index; a partial
or sparse one weighted by the share of the collection's documents it holds at the end of the
run). An update counts every index, not only those on the fields it changes: the embedded
server rewrites every index entry of the document on any update (docs/internals.md, "Known quirks").
Documents written by one `update_many` count once, so the figure is low where one is used
(the worker marks a claim's customer messages replied with one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

# Short names for the collections the pipeline touches.
COLLECTIONS = {
    "dialogues_dialogue": "dialogues",
    "dialogues_message": "messages",
    "channels_app_channel": "channels",
    "chatbots_chatbot": "bots",
}
TOP_TYPES = {"queries": "find", "insert": "insert", "update": "update", "commands": "command", "getmore": "getmore",
             "remove": "delete"}  # fmt: skip


@dataclass
class DbSnapshot:
    opcounters: dict[str, int]
    # (collection, type) -> (count, microseconds)
    top: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


class DbCounters:
    """Snapshots of the server's counters through a client of its own."""

    def __init__(self, url: str, db_name: str):
        self.client: MongoClient = MongoClient(url)
        self.db_name = db_name
        # What taking one snapshot adds to the counters itself, subtracted from every diff.
        self.overhead: dict[str, int] = {}
        first = self.snapshot()
        second = self.snapshot()
        self.overhead = {k: second.opcounters[k] - first.opcounters[k] for k in first.opcounters}

    def snapshot(self) -> DbSnapshot:
        status = self.client.admin.command("serverStatus")
        top = self.client.admin.command("top")["totals"]
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        for ns, stats in top.items():
            db, _, coll = ns.partition(".")
            if db != self.db_name or not isinstance(stats, dict):
                continue
            name = COLLECTIONS.get(coll, coll)
            for kind, label in TOP_TYPES.items():
                entry = stats.get(kind) or {}
                if entry.get("count"):
                    counts[(name, label)] = (int(entry["count"]), int(entry.get("time") or 0))
        return DbSnapshot(opcounters={k: int(v) for k, v in status["opcounters"].items()}, top=counts)

    def close(self) -> None:
        self.client.close()


@dataclass
class DbDelta:
    opcounters: dict[str, int] = field(default_factory=dict)
    top: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def add(self, before: DbSnapshot, after: DbSnapshot, overhead: dict[str, int]) -> None:
        for key, value in after.opcounters.items():
            delta = value - before.opcounters.get(key, 0) - overhead.get(key, 0)
            self.opcounters[key] = self.opcounters.get(key, 0) + delta
        for where, (count, micros) in after.top.items():
            was_count, was_micros = before.top.get(where, (0, 0))
            have_count, have_micros = self.top.get(where, (0, 0))
            self.top[where] = (have_count + count - was_count, have_micros + micros - was_micros)

    def per_message(self, messages: int) -> dict[str, Any]:
        """Operations and server milliseconds per message, by collection and type."""
        ops = {
            f"{coll}.{kind}": round(count / messages, 2)
            for (coll, kind), (count, _) in sorted(self.top.items())
            if count
        }
        ms = {
            f"{coll}.{kind}": round(micros / 1000 / messages, 3)
            for (coll, kind), (count, micros) in sorted(self.top.items())
            if count
        }
        named_commands = sum(count for (_, kind), (count, _) in self.top.items() if kind == "command")
        return {
            "ops": ops,
            "ops_total": round(sum(c for c, _ in self.top.values()) / messages, 2),
            "server_ms": ms,
            "server_ms_total": round(sum(m for _, m in self.top.values()) / 1000 / messages, 3),
            "opcounters": {k: round(v / messages, 2) for k, v in self.opcounters.items()},
            # Commands on no collection: connection handshakes, pings, session ends.
            "other_commands": round(max(0, self.opcounters.get("command", 0) - named_commands) / messages, 3),
        }

    def count(self, coll: str, kind: str) -> int:
        return self.top.get((coll, kind), (0, 0))[0]


def worker_reads(delta: DbDelta, *, messages: int, wall_s: float) -> dict[str, float]:
    """The worker's passes over a dialogue (one window read on messages each) per message, and
    the finds on dialogues per second: the worker's look-ups for due work (most of them empty
    when it keeps up), its renewal reads and the webhook's reservation re-reads. The diagnostic
    phase (bench.diagnose) tells these apart."""
    passes = delta.count("messages", "find")
    finds = delta.count("dialogues", "find")
    return {
        "passes_per_message": round(passes / messages, 3) if messages else 0.0,
        "dialogue_finds_per_s": round(finds / wall_s, 1) if wall_s else 0.0,
    }


def index_weight(index: dict[str, Any], *, count: Callable[[dict[str, Any]], int], total: int) -> float:
    """How many entries of this index one written document has, on average: 1, or for a
    partial or sparse index the share of the collection's documents it holds (`count(filter)`
    counts them)."""
    if not total:
        return 1.0
    if index.get("partialFilterExpression"):
        return count(dict(index["partialFilterExpression"])) / total
    if index.get("sparse"):
        return count({"$or": [{field: {"$exists": True}} for field in index["key"]]}) / total
    return 1.0


def index_weights(db: Database) -> dict[str, float]:
    """Index entries per written document, by collection (short names, as in `top`)."""
    weights: dict[str, float] = {}
    for name in db.list_collection_names():
        coll = db[name]
        total = coll.count_documents({})
        weight = 0.0
        for index in coll.list_indexes():
            weight += index_weight(dict(index), count=coll.count_documents, total=total)
        weights[COLLECTIONS.get(name, name)] = round(weight, 3)
    return weights


# The collections the index figures are shown for; the rest are added up as "other".
INDEX_GROUPS = ("dialogues", "messages")


def index_entries(delta: DbDelta, weights: dict[str, float], *, messages: int) -> dict[str, float]:
    """Index entries written per message, by collection group and in total."""
    by_group = dict.fromkeys((*INDEX_GROUPS, "other"), 0.0)
    for (coll, kind), (count, _) in delta.top.items():
        if kind in ("insert", "update") and count:
            group = coll if coll in INDEX_GROUPS else "other"
            by_group[group] += count * weights.get(coll, 1.0)
    result = {group: round(n / messages, 2) if messages else 0.0 for group, n in by_group.items()}
    result["total"] = round(sum(by_group.values()) / messages, 2) if messages else 0.0
    return result
