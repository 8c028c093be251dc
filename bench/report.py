"""The table on the terminal, the JSON file and the PNG plot, and the targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def table(headers: list[str], rows: list[list[Any]]) -> str:
    text = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    lines = [_row(headers, widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(r, widths) for r in text]
    return "\n".join(lines)


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue, with the measured value and whether it is met."""
    checks: list[dict[str, Any]] = []
    load = {r["concurrency"]: r for r in results.get("load", [])}
    floor = results.get("floor")
    for concurrency, r in sorted(load.items()):
        lat = r["latency_ms"]
        checks.append(
            {"target": f"C={concurrency}: 0 lost, 0 duplicated, 0 non-2xx, 2N stored, K dialogues",
             "value": f"lost {r['replies_lost']}, dup {r['replies_duplicated']}, non-2xx {r['non_2xx']}, "
                      f"stored {r['messages_stored']}/{2 * r['messages']}, dialogues {r['dialogues']}/{r['channels']}",
             "met": r["correct"], "kind": "correctness"}
        )  # fmt: skip
        checks.append(
            {"target": f"C={concurrency}: p99 <= 3 x p50", "value": f"p99 {lat['p99']} ms, p50 {lat['p50']} ms "
             f"(x{lat['p99'] / lat['p50']:.2f})", "met": lat["p99"] <= 3 * lat["p50"], "kind": "performance"}
        )  # fmt: skip
    if 16 in load:
        r = load[16]
        checks.append(
            {"target": "C=16: >= 100 messages/s", "value": f"{r['throughput_msg_s']} msg/s",
             "met": r["throughput_msg_s"] >= 100, "kind": "performance"}
        )  # fmt: skip
        if floor:
            fraction = r["throughput_msg_s"] / floor["throughput_msg_s"]
            checks.append(
                {"target": "C=16: >= 60 % of the floor",
                 "value": f"{fraction:.0%} of {floor['throughput_msg_s']} msg/s",
                 "met": fraction >= 0.6, "kind": "performance"}
            )  # fmt: skip
    growth = results.get("growth") or []
    for g in growth:
        checks.append(
            {"target": f"growth at {g['size']} messages: all stored, all 2xx",
             "value": f"non-2xx {g['non_2xx']}, stored {g['stored_after']}", "met": g["correct"],
             "kind": "correctness"}
        )  # fmt: skip
    if len(growth) >= 2:
        small, large = growth[0], growth[-1]
        ratio = large["latency_ms"]["p50"] / small["latency_ms"]["p50"]
        checks.append(
            {"target": f"growth p50 at {large['size']} within 20 % of p50 at {small['size']}",
             "value": f"{large['latency_ms']['p50']} ms vs {small['latency_ms']['p50']} ms (x{ratio:.2f})",
             "met": ratio <= 1.2, "kind": "performance"}
        )  # fmt: skip
    if floor:
        checks.append(
            {"target": "floor: 0 lost, 2N stored", "value": f"replies {floor['replies_received']}/{floor['messages']}, "
             f"stored {floor['messages_stored']}", "met": floor["correct"], "kind": "correctness"}
        )  # fmt: skip
    return checks


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    if results.get("load"):
        rows = []
        for r in results["load"]:
            lat = r["latency_ms"]
            rows.append(
                [f"C={r['concurrency']}", r["messages"], r["channels"], r["throughput_msg_s"], lat["p50"], lat["p90"],
                 lat["p99"], lat["max"], r["non_2xx"], f"{r['replies_received']}/{r['messages']}",
                 r["replies_duplicated"], f"{r['messages_stored']}/{2 * r['messages']}",
                 f"{r['dialogues']}/{r['channels']}", r.get("fraction_of_floor", "-")]
            )  # fmt: skip
        out.append("LOAD (webhook through gunicorn; latency in ms)")
        out.append(
            table(
                [
                    "run",
                    "N",
                    "K",
                    "msg/s",
                    "p50",
                    "p90",
                    "p99",
                    "max",
                    "non-2xx",
                    "replies",
                    "dup",
                    "stored",
                    "dialogues",
                    "of floor",
                ],
                rows,
            )  # fmt: skip
        )
    if results.get("floor"):
        f = results["floor"]
        lat = f["latency_ms"]
        out.append("\nFLOOR (same writes with pymongo + same POST with requests, threads, no framework)")
        out.append(
            table(
                ["threads", "N", "msg/s", "p50", "p90", "p99", "max", "replies", "stored", "db ops/msg"],
                [
                    [
                        f["threads"],
                        f["messages"],
                        f["throughput_msg_s"],
                        lat["p50"],
                        lat["p90"],
                        lat["p99"],
                        lat["max"],
                        f"{f['replies_received']}/{f['messages']}",
                        f"{f['messages_stored']}/{2 * f['messages']}",
                        f["db_ops_per_message"],
                    ]
                ],
            )  # fmt: skip
        )
    cpu_rows = [[f"load C={r['concurrency']}", *r["cpu_ms_per_message"].values(), r.get("cpu_busy_fraction", "-")]
                for r in results.get("load", []) if r.get("cpu_ms_per_message")]  # fmt: skip
    if results.get("floor", {}).get("cpu_ms_per_message"):
        cpu_rows.append(["floor", *results["floor"]["cpu_ms_per_message"].values(), "-"])
    if cpu_rows:
        names = list((results.get("load") or [results.get("floor")])[0]["cpu_ms_per_message"])
        out.append("\nCPU ms per message, by process (where the time goes)")
        out.append(table(["run", *names, "busy share of all cores"], cpu_rows))
    if results.get("growth"):
        out.append("\nGROWTH (one dialogue pre-filled, then messages at concurrency 1; latency in ms)")
        out.append(
            table(
                ["dialogue size", "messages", "p50", "p90", "p99", "max", "non-2xx"],
                [
                    [
                        g["size"],
                        g["messages"],
                        g["latency_ms"]["p50"],
                        g["latency_ms"]["p90"],
                        g["latency_ms"]["p99"],
                        g["latency_ms"]["max"],
                        g["non_2xx"],
                    ]
                    for g in results["growth"]
                ],
            )  # fmt: skip
        )
    checks = results.get("targets") or []
    if checks:
        out.append("\nTARGETS")
        out.append(
            table(
                ["", "target", "measured"],
                [["ok  " if c["met"] else "MISS", c["target"], c["value"]] for c in checks],
            )
        )
    return "\n".join(out)


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
        ax.plot(sizes, [g["latency_ms"][key] for g in growth], style, label=key)
    ax.set_xscale("log")
    ax.set_xlabel("messages already in the dialogue")
    ax.set_ylabel("webhook latency (ms), concurrency 1")
    ax.set_ylim(bottom=0)
    ax.set_title("Per-message latency against dialogue size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
