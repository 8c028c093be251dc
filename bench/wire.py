"""A counting proxy for the MongoDB wire protocol, for the benchmark's diagnostic phase only.

The app is not touched: gunicorn, the worker and the floor's two processes are pointed at a
port of this proxy each (the same client options, another port), and it forwards every byte
to the embedded server while it reads the OP_MSG requests and replies going through. Each
operation is counted by what it is for (read from its filter and update, e.g. a find on the
due index that returned nothing is the worker's empty look-up; a compare-and-set reservation
that matched nothing is a reservation conflict), per client, so that the app's and the
floor's database work can be compared operation by operation.

It costs every operation an extra hop, so measured runs never go through it.

`python -m bench.wire --target-port P --listen gunicorn=PORT --listen worker=PORT ...` runs
until SIGTERM, then prints the counts as one JSON line (SIGUSR1: the counts so far).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
from collections import Counter
from typing import Any

import bson

OP_MSG = 2013
HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode


def _op_msg(payload: bytes) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The body document and the document sequences of an OP_MSG (after its header)."""
    (flags,) = struct.unpack_from("<I", payload, 0)
    end = len(payload) - (4 if flags & 1 else 0)  # checksumPresent
    pos, body, sequences = 4, {}, {}
    while pos < end:
        kind = payload[pos]
        pos += 1
        (size,) = struct.unpack_from("<i", payload, pos)
        if kind == 0:
            body = bson.decode(payload[pos : pos + size])
        else:
            stop = pos + size
            name_end = payload.index(b"\0", pos + 4)
            name = payload[pos + 4 : name_end].decode()
            docs, at = [], name_end + 1
            while at < stop:
                (doc_size,) = struct.unpack_from("<i", payload, at)
                docs.append(bson.decode(payload[at : at + doc_size]))
                at += doc_size
            sequences[name] = docs
        pos += size
    return body, sequences


def _short(coll: str) -> str:
    return {"dialogues_dialogue": "dialogue", "dialogues_message": "message", "channels_app_channel": "channel",
            "chatbots_chatbot": "bot"}.get(coll, coll)  # fmt: skip


def purpose(body: dict[str, Any], sequences: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What a request is for, one label per operation in it."""
    if not body:
        return ["other"]
    command = next(iter(body))
    target = body[command]
    coll = _short(target) if isinstance(target, str) else ""
    if command == "find":
        flt = body.get("filter") or {}
        keys = set(flt)
        projection = set(body.get("projection") or {})
        if coll == "dialogue":
            if "work_due_at" in keys:
                return ["dialogue: due look-up"]
            if keys == {"_id"} and "last_message_at" in projection:
                return ["dialogue: renewal read"]
            if keys == {"_id"} and projection == {"last_seq"}:
                return ["dialogue: reservation re-read (conflict)"]
            if "chat_id" in keys:
                return ["dialogue: find by key (first message)"]
            return [f"dialogue: find {sorted(keys)}"]
        if coll == "message":
            seq = flt.get("seq")
            if isinstance(seq, dict) and "$lt" in seq:
                return ["message: context read before the window"]
            if isinstance(seq, dict):
                return ["message: window read"]
            return [f"message: find {sorted(keys)}"]
        return [f"{coll}: find"]
    if command == "update":
        labels = []
        for update in body.get("updates") or sequences.get("updates") or []:
            q, u = update.get("q") or {}, update.get("u") or {}
            sets = set(u.get("$set") or {})
            if coll == "dialogue":
                if "$inc" in u and "last_seq" in q:
                    labels.append("dialogue: reservation")
                elif update.get("upsert"):
                    labels.append("dialogue: create (first message)")
                elif "done_seq" in (u.get("$max") or {}):
                    labels.append("dialogue: release (settled)" if "last_seq" in q else "dialogue: release")
                elif "claim_token" in sets:
                    labels.append("dialogue: claim")
                elif sets == {"claim_until"} and "claim_token" in q:
                    labels.append("dialogue: renewal")
                else:
                    labels.append(f"dialogue: update {sorted(u)}")
            elif coll == "message":
                if "delivery_attempts" in (u.get("$inc") or {}):
                    labels.append("message: record delivery")
                elif "reply_state" in sets:
                    labels.append("message: mark replied")
                else:
                    labels.append(f"message: update {sorted(sets)}")
            else:
                labels.append(f"{coll}: update {sorted(sets)}")
        return labels or [f"{coll}: update"]
    if command == "insert":
        docs = body.get("documents") or sequences.get("documents") or []
        return [f"{coll}: insert {(d.get('role') or '').lower()}".rstrip() for d in docs] or [f"{coll}: insert"]
    if command in ("findAndModify", "findandmodify"):
        return [f"{coll}: findAndModify"]
    if command == "aggregate":
        return [f"{coll}: ORM read (aggregate)"]
    if command == "getMore":
        return ["getMore"]
    return [f"command {command}"]


def outcome(labels: list[str], reply: dict[str, Any]) -> list[str]:
    """Marks the operations whose answer says they found or changed nothing."""
    out = []
    for label in labels:
        if label == "dialogue: due look-up":
            batch = (reply.get("cursor") or {}).get("firstBatch") or []
            label += " -> empty" if not batch else " -> found"
        elif label in (
            "dialogue: reservation",
            "dialogue: claim",
            "dialogue: release",
            "dialogue: release (settled)",
            "dialogue: renewal",
        ):
            # One operation per request for these; n is how many matched.
            label += " -> matched" if reply.get("n") else " -> no match"
        out.append(label)
    return out


class Proxy:
    def __init__(self, target_port: int):
        self.target_port = target_port
        self.counts: dict[str, Counter[str]] = {}

    async def serve(self, name: str, port: int) -> asyncio.Server:
        counts = self.counts.setdefault(name, Counter())

        async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            pending: dict[int, list[str]] = {}

            async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, requests: bool) -> None:
                try:
                    while True:
                        header = await reader.readexactly(16)
                        length, request_id, response_to, opcode = HEADER.unpack(header)
                        payload = await reader.readexactly(length - 16)
                        writer.write(header + payload)
                        if opcode == OP_MSG:
                            try:
                                body, sequences = _op_msg(payload)
                                if requests:
                                    pending[request_id] = purpose(body, sequences)
                                elif response_to in pending:
                                    for label in outcome(pending.pop(response_to), body):
                                        counts[label] += 1
                            except Exception:  # noqa: BLE001 - never break the stream over a count
                                counts["unparsed"] += 1
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                finally:
                    writer.close()

            await asyncio.gather(pump(client_r, server_w, True), pump(server_r, client_w, False))

        return await asyncio.start_server(handle, "127.0.0.1", port)


async def main_async(target_port: int, listen: list[tuple[str, int]]) -> None:
    proxy = Proxy(target_port)
    servers = [await proxy.serve(name, port) for name, port in listen]
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # SIGUSR1: the counts so far, one JSON line (the benchmark takes snapshots between phases).
    loop.add_signal_handler(
        signal.SIGUSR1, lambda: print(json.dumps({n: dict(c) for n, c in proxy.counts.items()}), flush=True)
    )
    await stop.wait()
    for server in servers:
        server.close()
    print(json.dumps({name: dict(c) for name, c in proxy.counts.items()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wire")
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--listen", action="append", default=[], help="name=port")
    args = parser.parse_args()
    listen = [(item.split("=")[0], int(item.split("=")[1])) for item in args.listen]
    asyncio.run(main_async(args.target_port, listen))


if __name__ == "__main__":
    main()


class WireProxy:
    """The proxy as a child process of the benchmark."""

    def __init__(self, *, target_port: int, names: list[str]):
        from devtools.embedded_mongo import free_port

        self.ports = {name: free_port() for name in names}
        self.target_port = target_port
        self.process: Any = None

    def start(self) -> None:
        import subprocess
        import sys

        args = [sys.executable, "-m", "bench.wire", "--target-port", str(self.target_port)]
        for name, port in self.ports.items():
            args += ["--listen", f"{name}={port}"]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit("error: the wire proxy did not start")

    def snapshot(self) -> dict[str, dict[str, int]]:
        self.process.send_signal(signal.SIGUSR1)
        return json.loads(self.process.stdout.readline())

    def stop(self) -> dict[str, dict[str, int]]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


def counts_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {
        name: {k: v - before.get(name, {}).get(k, 0) for k, v in c.items() if v - before.get(name, {}).get(k, 0)}
        for name, c in after.items()
    }
