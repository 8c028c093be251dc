"""The tables on the terminal, the JSON file and the PNG plot, and the targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# End-to-end throughput at C=16 before the pipeline was split (docs/benchmarks.md, 1x8 gunicorn, the
# webhook replied and delivered itself): the new pipeline must not fall below it.
PREVIOUS_E2E_MSG_S = 76.5
MODERATE_P50_TARGET_MS = 50.0
# The moderate load the latency target is read at (messages/s, an open loop): about a third of
# what the stack replies at C=16 on the embedded server.
MODERATE_RATE = 20.0
# The app's end-to-end rate at C=16 as a share of each floor's in the same run (issues 6 and 25).
FLOOR_SHARE_TARGET = 0.6
SIMPLE_SHARE_TARGET = 0.6
DB_CPU_MS_TARGET = 12.0
# With the worker running and nothing due, the database server's CPU, as a share of one core;
# and the first message after a quiet spell, ack to receipt.
IDLE_DB_CPU_TARGET_PERCENT = 1.0
FIRST_AFTER_QUIET_TARGET_MS = 100.0
# The LLM stage (bench.llmstage).
LLM_BOUND_EFFICIENCY_TARGET = 0.8
PROVIDER_429_SHARE_TARGET = 0.01
PROVIDER_RATE_SHARE_TARGET = 0.9
NOISY_P50_OVER_LATENCY_TARGET = 1.5
CAPACITY_IN_FLIGHT_TARGET = 1000
CAPACITY_RSS_MB_TARGET = 300.0
# Bursty chats (bench.bursts), under the burst reply policy: LLM calls per customer message, and
# the slack allowed beyond the quiet time and the LLM's latency for a burst's reply.
BURST_CALLS_PER_MESSAGE_TARGET = 0.25
BURST_REPLY_SLACK_MS = 300.0


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def table(headers: list[str], rows: list[list[Any]]) -> str:
    text = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    lines = [_row(headers, widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(r, widths) for r in text]
    return "\n".join(lines)


def best_floor(results: dict[str, Any]) -> dict[str, Any] | None:
    floors = results.get("floor") or []
    return max(floors, key=lambda f: f["e2e"]["replies_per_s"]) if floors else None


def measured_runs(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every run with ingest and end-to-end numbers, labelled."""
    runs: list[tuple[str, dict[str, Any]]] = [(f"load C={r['concurrency']}", r) for r in results.get("load") or []]
    runs += [(f"moderate {m['rate']:g}/s", m) for m in results.get("moderate") or []]
    runs += [(f"floor T={f['threads']}", f) for f in results.get("floor") or []]
    if results.get("simple"):
        runs.append((f"simple C={results['simple']['concurrency']}", results["simple"]))
    sn = results.get("slow_neighbour")
    if sn:
        runs += [("A alone", sn["alone"]), ("A with B hanging", sn["with_b"])]
    if results.get("slow_llm"):
        runs.append(("slow LLM 2 s", results["slow_llm"]))
    return runs


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue, with the measured value and whether it is met."""
    checks: list[dict[str, Any]] = []
    for name, r in measured_runs(results):
        checks.append(
            {"target": f"{name}: every message 2xx and answered exactly once, all stored",
             "value": f"non-2xx {r['non_2xx']}, replies {r['replies_received']}/{r['messages']}, lost "
                      f"{r['replies_lost']}, dup {r['replies_duplicated']}, unexpected {r['replies_unexpected']}, "
                      f"stored {r['messages_stored']}/{2 * r['messages']}, dialogues {r['dialogues']}/{r['channels']}",
             "met": r["correct"], "kind": "correctness"}
        )  # fmt: skip
    load = {r["concurrency"]: r for r in results.get("load", [])}
    for concurrency, r in sorted(load.items()):
        lat = r["ingest"]["latency_ms"]
        checks.append(
            {"target": f"C={concurrency}: webhook p99 <= 3 x p50", "value": f"p99 {lat['p99']} ms, p50 {lat['p50']} ms "
             f"(x{lat['p99'] / lat['p50']:.2f})", "met": lat["p99"] <= 3 * lat["p50"], "kind": "performance"}
        )  # fmt: skip
    floor = best_floor(results)
    if 16 in load:
        r = load[16]
        checks.append(
            {"target": "C=16: >= 100 messages/s acknowledged (ingest)", "value": f"{r['ingest']['acks_per_s']} acks/s",
             "met": r["ingest"]["acks_per_s"] >= 100, "kind": "performance"}
        )  # fmt: skip
        e2e = r["e2e"]["replies_per_s"]
        checks.append(
            {"target": f"C=16: end to end >= {PREVIOUS_E2E_MSG_S} replies/s (before the split)",
             "value": f"{e2e} replies/s", "met": e2e >= PREVIOUS_E2E_MSG_S, "kind": "performance"}
        )  # fmt: skip
        if floor:
            fraction = e2e / floor["e2e"]["replies_per_s"]
            checks.append(
                {"target": f"C=16: end to end >= {FLOOR_SHARE_TARGET:.0%} of the floor at its fastest thread count",
                 "value": f"{fraction:.0%} of {floor['e2e']['replies_per_s']} (T={floor['threads']})",
                 "met": fraction >= FLOOR_SHARE_TARGET, "kind": "performance"}
            )  # fmt: skip
        simple = results.get("simple")
        if simple and simple["e2e"]["replies_per_s"]:
            fraction = e2e / simple["e2e"]["replies_per_s"]
            checks.append(
                {"target": f"C=16: end to end >= {SIMPLE_SHARE_TARGET:.0%} of the simplest-design floor (same run)",
                 "value": f"{fraction:.0%} of {simple['e2e']['replies_per_s']}",
                 "met": fraction >= SIMPLE_SHARE_TARGET, "kind": "performance"}
            )  # fmt: skip
        db_ms = r.get("cpu_ms_per_message", {}).get("database")
        if db_ms is not None:
            checks.append(
                {"target": f"C=16: database CPU per message < {DB_CPU_MS_TARGET:g} ms", "value": f"{db_ms} ms",
                 "met": db_ms < DB_CPU_MS_TARGET, "kind": "performance"}
            )  # fmt: skip
    moderates = results.get("moderate") or []
    at_target = [m for m in moderates if m["rate"] == MODERATE_RATE]
    moderate = at_target[0] if at_target else (moderates[0] if moderates else None)
    if moderate:
        p50 = moderate["e2e"]["ack_to_receipt_ms"]["p50"]
        checks.append(
            {"target": f"moderate load ({moderate['rate']:g}/s): ack-to-receipt p50 <= {MODERATE_P50_TARGET_MS:g} ms",
             "value": f"p50 {p50} ms, p99 {moderate['e2e']['ack_to_receipt_ms']['p99']} ms",
             "met": p50 <= MODERATE_P50_TARGET_MS, "kind": "performance"}
        )  # fmt: skip
    idle = results.get("idle")
    if idle and "database_cpu_percent_of_core" in idle:
        share = idle["database_cpu_percent_of_core"]
        checks.append(
            {"target": f"idle: database CPU < {IDLE_DB_CPU_TARGET_PERCENT:g} % of a core (the worker running, "
                       f"nothing to do)",
             "value": f"{share} % over {idle['seconds']} s; {idle['dialogue_finds_per_s']} dialogue finds/s",
             "met": share < IDLE_DB_CPU_TARGET_PERCENT, "kind": "performance"}
        )  # fmt: skip
    quiet = (idle or {}).get("first_after_quiet")
    if quiet:
        worst = quiet["max_ms"]
        checks.append(
            {"target": f"first message after {quiet['quiet_s']:g} s of quiet: ack-to-receipt <= "
                       f"{FIRST_AFTER_QUIET_TARGET_MS:g} ms (every one of {quiet['times']})",
             "value": f"max {worst} ms, median {quiet['median_ms']} ms, missing {quiet['missing']}",
             "met": worst is not None and not quiet["missing"] and worst <= FIRST_AFTER_QUIET_TARGET_MS,
             "kind": "performance"}
        )  # fmt: skip
    growth = results.get("growth") or []
    for g in growth:
        checks.append(
            {"target": f"growth at {g['size']} messages: all 2xx, stored, answered once",
             "value": f"non-2xx {g['non_2xx']}, lost {g['replies_lost']}, dup {g['replies_duplicated']}, "
                      f"stored {g['stored_after']}", "met": g["correct"], "kind": "correctness"}
        )  # fmt: skip
    if len(growth) >= 2:
        small, large = growth[0], growth[-1]
        ratio = large["latency_ms"]["p50"] / small["latency_ms"]["p50"]
        checks.append(
            {"target": f"growth: webhook p50 at {large['size']} within 20 % of p50 at {small['size']}",
             "value": f"{large['latency_ms']['p50']} ms vs {small['latency_ms']['p50']} ms (x{ratio:.2f})",
             "met": ratio <= 1.2, "kind": "performance"}
        )  # fmt: skip
    if results.get("llm_stage"):
        checks += llm_stage_targets(results["llm_stage"])
    if results.get("data_scale"):
        from bench.datascale import check_targets as data_scale_targets

        checks += data_scale_targets(results["data_scale"])
    return checks


def llm_stage_targets(stage: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def correct(name: str, r: dict[str, Any]) -> None:
        checks.append(
            {"target": f"LLM stage, {name}: every message 2xx and answered exactly once",
             "value": f"non-2xx {r['non_2xx']}, replies {r['replies_received']}/{r['messages']}, lost "
                      f"{r['replies_lost']}, dup {r['replies_duplicated']}", "met": _llm_correct(r),
             "kind": "correctness"}
        )  # fmt: skip

    for key in ("llm_bound_1", "llm_bound_10"):
        r = stage.get(key)
        if not r:
            continue
        correct(f"LLM-bound, {r['bots']} bot(s)", r)
        checks.append(
            {"target": f"LLM-bound, {r['conversations']} conversations over {r['bots']} bot(s): completion within "
                       f"{LLM_BOUND_EFFICIENCY_TARGET:.0%} of ideal (ingest + {r['llm_latency_ms'] / 1000:g} s)",
             "value": f"{r['efficiency']:.0%}: ideal {r['ideal_s']} s, completion {r['completion_s']} s",
             "met": r["efficiency"] >= LLM_BOUND_EFFICIENCY_TARGET, "kind": "performance"}
        )  # fmt: skip
    r = stage.get("provider_limit")
    if r:
        correct("provider limit", r)
        checks.append(
            {"target": f"provider limit: under {PROVIDER_429_SHARE_TARGET:.0%} of calls answered 429",
             "value": f"{r['share_429']:.2%} ({r['llm_statuses'].get('429', 0)} of {r['llm_requests']})",
             "met": r["share_429"] < PROVIDER_429_SHARE_TARGET, "kind": "performance"}
        )  # fmt: skip
        share = r.get("rate_share") or 0.0
        checks.append(
            {"target": f"provider limit: >= {PROVIDER_RATE_SHARE_TARGET:.0%} of the allowed {r['limit_rpm']}/min "
                       f"reached (steady span)",
             "value": f"{r['steady_rate_per_min']}/min over {r['steady_span_s']} s ({share:.0%})",
             "met": share >= PROVIDER_RATE_SHARE_TARGET, "kind": "performance"}
        )  # fmt: skip
    r = stage.get("noisy_bot")
    if r:
        correct("noisy bot, A", r["a"])
        correct("noisy bot, B", r["b"])
        ratio = r.get("a_p50_over_latency")
        checks.append(
            {"target": f"noisy bot: A's ack-to-receipt p50 <= {NOISY_P50_OVER_LATENCY_TARGET:g} x the LLM's latency "
                       f"({r['llm_latency_ms']} ms)",
             "value": f"p50 {r['a']['ack_to_receipt_ms'].get('p50')} ms (x{ratio})",
             "met": ratio is not None and ratio <= NOISY_P50_OVER_LATENCY_TARGET, "kind": "performance"}
        )  # fmt: skip
    for key in ("bursty_each", "bursty_burst"):
        r = stage.get(key)
        if not r:
            continue
        checks.append(
            {"target": f"bursty chats, {r['policy']}: every chat's last message answered exactly once, all 2xx",
             "value": f"non-2xx {r['non_2xx']}, chats answered {r['chats_answered']}/{r['chats']}",
             "met": r["correct"], "kind": "correctness"}
        )  # fmt: skip
        if r["policy"] != "burst":
            continue
        checks.append(
            {"target": f"bursty chats, burst: <= {BURST_CALLS_PER_MESSAGE_TARGET:g} LLM calls per customer message",
             "value": f"{r['llm_calls_per_message']} ({r['llm_requests']} calls, {r['messages']} messages)",
             "met": r["llm_calls_per_message"] is not None
             and r["llm_calls_per_message"] <= BURST_CALLS_PER_MESSAGE_TARGET, "kind": "performance"}
        )  # fmt: skip
        bound = r["quiet_ms"] + r["llm_latency_ms"] + BURST_REPLY_SLACK_MS
        p50 = r["last_message_to_reply_ms"].get("p50")
        checks.append(
            {"target": f"bursty chats, burst: a burst's last message to its reply p50 <= {bound:g} ms (quiet "
                       f"{r['quiet_ms']} + LLM {r['llm_latency_ms']} + {BURST_REPLY_SLACK_MS:g})",
             "value": f"p50 {p50} ms, p90 {r['last_message_to_reply_ms'].get('p90')} ms",
             "met": p50 is not None and p50 <= bound, "kind": "performance"}
        )  # fmt: skip
    r = stage.get("capacity")
    if r:
        correct("capacity", r)
        # A --quick run offers fewer conversations than the target: it must hold all of them.
        wanted = min(CAPACITY_IN_FLIGHT_TARGET, r["conversations"])
        rss = r["worker"].get("rss_at_peak_in_flight_mb")
        checks.append(
            {"target": f"capacity: one worker process holds >= {wanted} LLM calls in flight, at <= "
                       f"{CAPACITY_RSS_MB_TARGET:g} MB resident",
             "value": f"{r['peak_in_flight']} in flight; {rss} MB then (peak {r['worker']['rss_peak_mb']} MB)",
             "met": r["peak_in_flight"] >= wanted and rss is not None and rss <= CAPACITY_RSS_MB_TARGET,
             "kind": "performance"}
        )  # fmt: skip
    return checks


def _llm_correct(r: dict[str, Any]) -> bool:
    return r["non_2xx"] == 0 and r["replies_lost"] == 0 and r["replies_duplicated"] == 0 and r["replies_received"] > 0


def render_llm_stage(stage: dict[str, Any]) -> str:
    out = ["\nLLM STAGE (each scenario on a freshly started worker; times in s from the first message sent; the "
           "worker's resident memory sampled every 0.2 s, its CPU per reply)"]  # fmt: skip
    rows = []
    for key in ("llm_bound_1", "llm_bound_10"):
        r = stage.get(key)
        if r:
            rows.append([f"LLM-bound, {r['bots']} bot(s)", r["messages"], f"{r['llm']} {r['llm_latency_ms']} ms",
                         r["ingest_s"], r["completion_s"], f"ideal {r['ideal_s']}: {r['efficiency']:.0%}",
                         r["ack_to_receipt_ms"].get("p50"), r["worker"]["rss_peak_mb"],
                         r["worker"]["cpu_ms_per_reply"]])  # fmt: skip
    r = stage.get("provider_limit")
    if r:
        rows.append(["provider limit", r["messages"], f"fake {r['llm_latency_ms']} ms", r["ingest_s"],
                     r["completion_s"], f"429 {r['share_429']:.2%}, {r['steady_rate_per_min']}/min "
                     f"({(r.get('rate_share') or 0):.0%})", r["ack_to_receipt_ms"].get("p50"),
                     r["worker"]["rss_peak_mb"], r["worker"]["cpu_ms_per_reply"]])  # fmt: skip
    r = stage.get("noisy_bot")
    if r:
        for who in ("a", "b"):
            x = r[who]
            rows.append([f"noisy bot, {who.upper()}", x["messages"], f"fake {r['llm_latency_ms']} ms", x["ingest_s"],
                         x["completion_s"], f"p50 x{r['a_p50_over_latency']} latency" if who == "a" else "-",
                         x["ack_to_receipt_ms"].get("p50"), r["worker"]["rss_peak_mb"],
                         r["worker"]["cpu_ms_per_reply"]])  # fmt: skip
    r = stage.get("capacity")
    if r:
        rows.append([f"capacity, {r['bots']} bots", r["messages"], f"fake {r['llm_latency_ms']} ms", r["ingest_s"],
                     r["completion_s"], f"{r['peak_in_flight']} in flight at "
                     f"{r['worker'].get('rss_at_peak_in_flight_mb')} MB", r["ack_to_receipt_ms"].get("p50"),
                     r["worker"]["rss_peak_mb"], r["worker"]["cpu_ms_per_reply"]])  # fmt: skip
    out.append(table(["scenario", "N", "LLM", "ingest", "completion", "measure", "ack->receipt p50 ms",
                      "worker peak MB", "worker CPU ms/reply"], rows))  # fmt: skip
    bursts = [stage[key] for key in ("bursty_each", "bursty_burst") if stage.get(key)]
    if bursts:
        out.append("\nbursty chats: each chat sends its messages a moment apart; LLM calls per customer message, and "
                   "each chat's last message (acknowledged) to the reply that answers it (ms)")  # fmt: skip
        out.append(table(["reply policy", "chats x messages", "gap ms", "LLM calls", "calls/message", "replies",
                          "last->reply p50", "p90", "max"],
                         [[b["policy"], f"{b['chats']} x {b['per_chat']}", b["gap_ms"], b["llm_requests"],
                           b["llm_calls_per_message"], b["replies"], b["last_message_to_reply_ms"].get("p50"),
                           b["last_message_to_reply_ms"].get("p90"), b["last_message_to_reply_ms"].get("max")]
                          for b in bursts]))  # fmt: skip
    splits = []
    for name, x in _llm_runs(stage):
        split = x.get("time_split")
        if split:
            to_call, delivery = split["stored_to_call_start_ms"], split["answer_to_delivered_ms"]
            splits.append([name, to_call.get("p50"), to_call.get("p90"), split["llm_call_ms"].get("p50"),
                           delivery.get("p50"), delivery.get("p90"), split["llm_retries"]])  # fmt: skip
    if splits:
        out.append("\nwhere a reply's time went (ms, from the stored documents): customer message stored -> LLM call "
                   "started (claim, pacing, slots), the call, answer -> delivered")  # fmt: skip
        out.append(table(["scenario", "to call p50", "p90", "call p50", "to delivered p50", "p90", "LLM retries"],
                         splits))  # fmt: skip
    shares = [(name, x["worker"].get("cpu_share_of_core") or {}) for name, x in _llm_scenarios(stage)]
    names = sorted({k for _, s in shares for k in s}, key=lambda k: CPU_ORDER.index(k) if k in CPU_ORDER else 99)
    if names:
        out.append("\nCPU as a share of one core over each scenario, by process")
        out.append(table(["scenario", *names], [[name, *(s.get(k, "-") for k in names)] for name, s in shares]))
    return "\n".join(out)


def _llm_scenarios(stage: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    names = {"llm_bound_1": "LLM-bound, 1 bot", "llm_bound_10": "LLM-bound, 10 bots",
             "provider_limit": "provider limit", "noisy_bot": "noisy bot", "capacity": "capacity"}  # fmt: skip
    return [(name, stage[key]) for key, name in names.items() if stage.get(key)]


def _llm_runs(stage: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    runs = []
    for name, r in _llm_scenarios(stage):
        if "a" in r and "b" in r:
            runs += [(f"{name}, A", r["a"]), (f"{name}, B", r["b"])]
        else:
            runs.append((name, r))
    return runs


def _of_floor(r: dict[str, Any], floor: dict[str, Any] | None) -> str:
    if not floor or not floor["e2e"]["replies_per_s"]:
        return "-"
    return f"{r['e2e']['replies_per_s'] / floor['e2e']['replies_per_s']:.0%}"


def render_floors(results: dict[str, Any]) -> str:
    """The C=16 load beside both floors of the same run: its share of each, database CPU and
    index entries written per message."""
    load = next((r for r in results.get("load") or [] if r.get("index_entries")), None)
    floor = best_floor(results)
    simple = results.get("simple")
    rows = [(f"app (load C={load['concurrency']})", load) if load else None,
            (f"pipeline floor (T={floor['threads']})", floor) if floor else None,
            (f"simplest design (C={simple['concurrency']})", simple) if simple else None]  # fmt: skip
    shown = [row for row in rows if row is not None]
    if not shown:
        return ""

    def share(r: dict[str, Any]) -> str:
        return _of_floor(load, r) if load and r is not load else "-"

    def entries(r: dict[str, Any], key: str) -> Any:
        return (r.get("index_entries") or {}).get(key, "-")

    lines = [
        "\nFLOORS (the same run; database CPU ms and index entries written per message: each insert or update "
        "times its collection's indexes, partial and sparse ones weighted by their share of the collection)",
        table(
            ["run", "replies/s", "app's share", "database CPU ms/msg", "index entries/msg", "dialogues", "messages",
             "other"],
            [[name, r["e2e"]["replies_per_s"], share(r), r.get("cpu_ms_per_message", {}).get("database", "-"),
              entries(r, "total"), entries(r, "dialogues"), entries(r, "messages"), entries(r, "other")]
             for name, r in shown],
        ),
    ]  # fmt: skip
    return "\n".join(lines)


CPU_ORDER = ["database", "app (gunicorn)", "worker", "floor worker", "simple floor (gunicorn)", "receiver",
             "load generator"]  # fmt: skip


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    runs = measured_runs(results)
    floor = best_floor(results)
    if runs:
        out.append("INGEST (the webhook's acknowledgement; latency in ms, request to 200)")
        out.append(table(
            ["run", "N", "K", "C", "acks/s", "p50", "p90", "p99", "max", "non-2xx"],
            [[name, r["messages"], r["channels"], r.get("concurrency") or r.get("threads") or "open",
              r["ingest"]["acks_per_s"], *(r["ingest"]["latency_ms"][k] for k in ("p50", "p90", "p99", "max")),
              r["non_2xx"]] for name, r in runs],
        ))  # fmt: skip
        out.append("\nEND TO END (replies/s: first message sent to last reply received; ack->receipt in ms: the "
                   "webhook's 200 at the load generator to the reply at the receiver)")  # fmt: skip
        out.append(table(
            ["run", "replies/s", "p50", "p90", "p99", "max", "replies", "lost", "dup", "stored", "of floor",
             "of simple"],
            [[name, r["e2e"]["replies_per_s"],
              *(r["e2e"]["ack_to_receipt_ms"][k] for k in ("p50", "p90", "p99", "max")),
              f"{r['replies_received']}/{r['messages']}", r["replies_lost"], r["replies_duplicated"],
              f"{r['messages_stored']}/{2 * r['messages']}",
              _of_floor(r, floor) if name.startswith(("load", "A ")) else "-",
              _of_floor(r, results.get("simple")) if name.startswith(("load", "A ")) else "-"] for name, r in runs],
        ))  # fmt: skip
        if results.get("simple"):
            out.append("(the simplest design POSTs the reply before its 200: its ack->receipt is negative)")
    if results.get("floor"):
        out.append("\nFLOOR (the same operations with pymongo and requests, no framework; T ingest threads + a "
                   "worker process with T threads)")  # fmt: skip
        out.append(table(
            ["threads", "acks/s", "webhook p50", "p99", "replies/s", "ack->receipt p50", "p99", "passes/msg",
             "empty polls/s", "reservation conflicts/msg"],
            [[f["threads"], f["ingest"]["acks_per_s"], f["ingest"]["latency_ms"]["p50"],
              f["ingest"]["latency_ms"]["p99"],
              f["e2e"]["replies_per_s"], f["e2e"]["ack_to_receipt_ms"]["p50"], f["e2e"]["ack_to_receipt_ms"]["p99"],
              f["db_worker"]["passes_per_message"], f["worker_counts"].get("empty_polls_per_s", "-"),
              round(f.get("reservation_conflicts", 0) / f["messages"], 3)] for f in results["floor"]],
        ))  # fmt: skip
        if floor:
            out.append(f"fastest: T={floor['threads']}, {floor['e2e']['replies_per_s']} replies/s")
    floors_table = render_floors(results)
    if floors_table:
        out.append(floors_table)
    cpu_runs = [(name, r) for name, r in runs if r.get("cpu_ms_per_message")]
    if cpu_runs:
        names = sorted({k for _, r in cpu_runs for k in r["cpu_ms_per_message"]},
                       key=lambda k: CPU_ORDER.index(k) if k in CPU_ORDER else 99)  # fmt: skip
        out.append("\nCPU ms per message, by process (the floor's ingest runs in the load generator)")
        out.append(table(
            ["run", *names, "busy share of all cores", "others' share"],
            [[name, *(r["cpu_ms_per_message"].get(k, "-") for k in names), r.get("cpu_busy_fraction", "-"),
              r.get("others_cpu_fraction", "-")] for name, r in cpu_runs],
        ))  # fmt: skip
        busy = [f"{name} ({r['others_cpu_fraction']:.0%})" for name, r in cpu_runs
                if r.get("others_cpu_fraction", 0) > 0.05]  # fmt: skip
        if busy:
            out.append("WARNING: other processes on this machine took more than 5 % of its CPU during: "
                       + ", ".join(busy) + ". Those numbers are not this stack's alone.")  # fmt: skip
    db_runs = [(name, r) for name, r in runs if r.get("db")]
    if db_runs:
        keys = sorted({k for _, r in db_runs for k in r["db"]["ops"]})
        out.append("\nDATABASE operations per message, by collection and type (the server's `top`; command = "
                   "findAndModify, or an ORM read, which this backend runs as an aggregate), server ms per message, "
                   "the worker's passes over a dialogue per message, and finds on dialogues per second (mostly the "
                   "worker's look-ups for due work; see DIAGNOSIS)")  # fmt: skip
        out.append(table(
            ["run", *keys, "other cmds", "total", "server ms", "passes", "dialogue finds/s"],
            [[name, *(r["db"]["ops"].get(k, "-") for k in keys), r["db"]["other_commands"], r["db"]["ops_total"],
              r["db"]["server_ms_total"], r["db_worker"]["passes_per_message"], r["db_worker"]["dialogue_finds_per_s"]]
             for name, r in db_runs],
        ))  # fmt: skip
    diagnosis = results.get("diagnosis")
    if diagnosis:
        out.append(render_diagnosis(diagnosis))
    if results.get("idle"):
        idle = results["idle"]
        out.append(f"\nidle ({idle['seconds']} s, nothing due): {idle['ops_per_s']} ops/s; CPU % {idle['cpu_percent']}")
        quiet = idle.get("first_after_quiet")
        if quiet:
            out.append(f"first message after {quiet['quiet_s']:g} s of quiet, ack->receipt ms: "
                       f"{quiet['ack_to_receipt_ms']} (median {quiet['median_ms']}, "
                       f"max {quiet['max_ms']})")  # fmt: skip
    sn = results.get("slow_neighbour")
    if sn:
        a, w, b = sn["alone"], sn["with_b"], sn["b"]
        out.append(f"\nSLOW NEIGHBOUR (bot A, {a['messages']} messages at C={a['concurrency']}; bot B: "
                   f"{b['conversations']} conversations on {b['channels']} channels whose receiver answers after "
                   f"30 s, {b['rate_msg_s']:g} msg/s while A runs)")  # fmt: skip
        out.append(table(
            ["A", "acks/s", "webhook p50", "p99", "replies/s", "ack->receipt p50", "p99", "correct"],
            [[name, r["ingest"]["acks_per_s"], r["ingest"]["latency_ms"]["p50"], r["ingest"]["latency_ms"]["p99"],
              r["e2e"]["replies_per_s"], r["e2e"]["ack_to_receipt_ms"]["p50"], r["e2e"]["ack_to_receipt_ms"]["p99"],
              r["correct"]] for name, r in (("alone", a), ("with B hanging", w))],
        ))  # fmt: skip
        out.append(f"B: {b['sent']} sent ({b['non_2xx']} non-2xx, webhook p99 {b['webhook_latency_ms']['p99']} ms), "
                   f"{b['replies_generated']} replies generated, {b['posts_reaching_receiver']} POSTs reached its "
                   f"hanging receiver, {b['delivered']} delivered")  # fmt: skip
        kept = w["e2e"]["replies_per_s"] / a["e2e"]["replies_per_s"] if a["e2e"]["replies_per_s"] else 0.0
        # A alone saturates the database; B's messages are stored too, so even if each cost no
        # more than one of A's, A could keep at most its share of the messages.
        ceiling = a["messages"] / (a["messages"] + b["sent"]) if b["sent"] else 1.0
        out.append(f"A kept {kept:.0%} of its rate alone. The database is saturated by A alone and B's {b['sent']} "
                   f"messages are stored in the same time, so if each cost what one of A's does, A could keep at "
                   f"most {ceiling:.0%}.")  # fmt: skip
    sl = results.get("slow_llm")
    if sl:
        out.append(f"\nSLOW LLM (worker with LLM_MOCK_DELAY_MS={sl['llm_delay_ms']}; {sl['messages']} messages at "
                   f"C={sl['concurrency']} over {sl['channels']} channels)")  # fmt: skip
        out.append(table(
            ["webhook p50", "p99", "acks/s", "every reply after (s)", "least possible (s)", "ack->receipt p50", "p99",
             "correct"],
            [[sl["ingest"]["latency_ms"]["p50"], sl["ingest"]["latency_ms"]["p99"], sl["ingest"]["acks_per_s"],
              sl["all_replies_s"], sl["least_possible_s"], sl["e2e"]["ack_to_receipt_ms"]["p50"],
              sl["e2e"]["ack_to_receipt_ms"]["p99"], sl["correct"]]],
        ))  # fmt: skip
    if results.get("growth"):
        rate = results["growth"][0].get("rate")
        out.append(f"\nGROWTH (one dialogue pre-filled, then one message every {1000 / rate:g} ms; latency in ms)")
        out.append(table(
            ["dialogue size", "messages", "webhook p50", "p90", "p99", "max", "ack->receipt p50", "p99", "non-2xx",
             "lost", "dup"],
            [[g["size"], g["messages"], g["latency_ms"]["p50"], g["latency_ms"]["p90"], g["latency_ms"]["p99"],
              g["latency_ms"]["max"], g["ack_to_receipt_ms"]["p50"], g["ack_to_receipt_ms"]["p99"], g["non_2xx"],
              g["replies_lost"], g["replies_duplicated"]] for g in results["growth"]],
        ))  # fmt: skip
    if results.get("llm_stage"):
        out.append(render_llm_stage(results["llm_stage"]))
    if results.get("data_scale"):
        from bench.datascale import render as render_data_scale

        out.append(render_data_scale(results["data_scale"], table))
    checks = results.get("targets") or []
    if checks:
        out.append("\nTARGETS")
        out.append(table(["", "target", "measured"],
                         [["ok  " if c["met"] else "MISS", c["target"], c["value"]] for c in checks]))  # fmt: skip
    return "\n".join(out)


def render_diagnosis(d: dict[str, Any]) -> str:
    columns = [("app: webhook", d["app"]["gunicorn"]), ("app: worker", d["app"]["worker"]),
               ("floor: ingest", d["floor"]["ingest"]), ("floor: worker", d["floor"]["worker"])]  # fmt: skip
    labels = sorted({label for _, counts in columns for label in counts})
    rows = [[label, *(counts.get(label, "") for _, counts in columns)] for label in labels]
    rows.append(["total", *(round(sum(counts.values()), 2) for _, counts in columns)])
    idle = d["idle_per_s"]
    lines = [
        f"\nDIAGNOSIS (every operation through a counting proxy, by purpose, per message; {d['messages']} messages "
        f"at C={d['concurrency']} for the app, the floor at T={d['floor_threads']})",
        table(["operation", *(name for name, _ in columns)], rows),
        "worker's empty look-ups per second: "
        + ", ".join(f"{k} {v}" for k, v in d["empty_polls_per_s"].items())
        + f"; idle, its operations per second: {idle}",
    ]
    return "\n".join(lines)


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def write_plot(path: Path, results: dict[str, Any]) -> bool:
    growth = results.get("growth") or []
    if not growth:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    sizes = [g["size"] for g in growth]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
        ax.plot(sizes, [g["latency_ms"][key] for g in growth], style, label=f"webhook {key}")
    ax.plot(sizes, [g["ack_to_receipt_ms"]["p50"] for g in growth], "d-.", label="ack to receipt p50")
    ax.set_xscale("log")
    ax.set_xlabel("messages already in the dialogue")
    ax.set_ylabel(f"latency (ms), one message every {1000 / growth[0]['rate']:g} ms")
    ax.set_ylim(bottom=0)
    ax.set_title("Per-message latency against dialogue size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
