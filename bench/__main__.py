"""`make bench`: load, growth and floor on a fresh stack started for this run.

    make bench                                  # everything, a few minutes
    make bench ARGS="--quick"                   # a smoke test in well under a minute
    make bench ARGS="--mode load --messages 5000 --channels 16 --concurrency 16,64"
    make bench ARGS="--mode load --profile"     # py-spy flame graph of the gunicorn worker at C=16

The app is served exactly as `make run` serves it (SERVER__WORKERS / SERVER__THREADS as
there); results go to bench-results/<timestamp>/ (results.json, growth.png, logs).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench import report
from bench.floor import FloorRun
from bench.stack import DB_NAME, ROOT, Stack
from bench.workload import LoadRun, run_growth, run_load, warm_up


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mode", choices=["load", "growth", "floor", "all"], default="all")
    parser.add_argument("--messages", type=int, help="customer messages per load run (default 2000; quick 200)")
    parser.add_argument("--channels", type=int, help="channels (one dialogue each) per load run (default 8; quick 4)")
    parser.add_argument("--concurrency", type=_ints, help="comma-separated load concurrencies (default 16,64)")
    parser.add_argument("--growth-sizes", type=_ints, help="dialogue sizes (default 10,1000,10000)")
    parser.add_argument("--growth-messages", type=int, help="messages sent at each size (default 200)")
    parser.add_argument("--floor-threads", type=int, default=16, help="floor threads (default 16, as load's C=16)")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke test of the benchmark itself")
    parser.add_argument("--profile", action="store_true", help="record a py-spy profile of gunicorn during load")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a performance target is missed too")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    quick = args.quick
    args.messages = args.messages or (200 if quick else 2000)
    args.channels = args.channels or (4 if quick else 8)
    args.concurrency = args.concurrency or ([16] if quick else [16, 64])
    args.growth_sizes = args.growth_sizes or ([10, 1000] if quick else [10, 1000, 10000])
    args.growth_messages = args.growth_messages or (30 if quick else 200)
    return args


def _start_profilers(stack: Stack, out_dir: Path, concurrency: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on the app (master and forked workers) and on the database server, written as
    speedscope files (open them at speedscope.app or summarise them with `python -m bench.profile`)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("    (py-spy not installed; skipping the profile)", flush=True)
        return []
    targets = {"app": stack.gunicorn.pid, "database": stack.mongo.process.pid}  # type: ignore[union-attr]
    return [
        subprocess.Popen(
            [
                str(py_spy),
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--rate",
                "200",
                "--format",
                "speedscope",
                "--output",
                str(out_dir / f"profile-{name}-c{concurrency}.speedscope.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for name, pid in targets.items()
    ]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = args.out / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = os.environ.get("SERVER__WORKERS", "1")
    threads = os.environ.get("SERVER__THREADS", "8")
    modes = ["load", "growth", "floor"] if args.mode == "all" else [args.mode]
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench" + (f' ARGS="{" ".join(argv)}"' if argv else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": os.getloadavg()},
        "server": {"workers": workers, "threads": threads, "database": "secantusd (embedded), in memory, fresh"},
        "settings": {"messages": args.messages, "channels": args.channels, "concurrency": args.concurrency,
                     "growth_sizes": args.growth_sizes, "growth_messages": args.growth_messages,
                     "floor_threads": args.floor_threads, "modes": modes},
    }  # fmt: skip
    print(f"==> Results in {out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir}", flush=True)
    print(
        f"==> Starting a fresh embedded database, migrating, gunicorn {workers} worker(s) x {threads} threads",
        flush=True,
    )
    started = time.monotonic()
    stack = Stack(out_dir=out_dir, workers=workers, threads=threads, log_level="info")
    try:
        stack.start()
        # The app's client options (one connection), so the floor writes as the app does.
        client: MongoClient = MongoClient(stack.mongo.app_url)
        db = client[DB_NAME]
        print(f"    ready in {time.monotonic() - started:.1f} s; warming up", flush=True)
        warm_up(stack)
        # The embedded server slows down as it fills, so whatever runs first looks faster.
        # The floor and the load at the floor's concurrency therefore run interleaved, in
        # segments ordered floor-load-load-floor (ABBA cancels a steady drift), on the same
        # server; the other concurrencies follow on their own.
        paired: dict[int, LoadRun] = {}
        if "floor" in modes:
            floor = FloorRun(stack, db, channels=args.channels, threads=args.floor_threads)
            pair = None
            if "load" in modes and args.floor_threads in args.concurrency:
                pair = LoadRun(stack, channels=args.channels, concurrency=args.floor_threads)
            segments = _split(args.messages, 4)
            print(f"==> floor{' and load' if pair else ''}: {args.messages} messages, {args.floor_threads} "
                  f"threads, interleaved in {len(segments)} segments", flush=True)  # fmt: skip
            for i, part in enumerate(segments):
                order = [floor, pair] if i % 4 in (0, 3) else [pair, floor]
                for runner in order:
                    if runner is not None:
                        runner.segment(part)
            results["floor"] = f = floor.result(db)
            print(f"    floor: {f['throughput_msg_s']} msg/s, p50 {f['latency_ms']['p50']} ms", flush=True)
            if pair is not None:
                paired[pair.concurrency] = pair
        if "load" in modes:
            results["load"] = []
            for concurrency in args.concurrency:
                if concurrency in paired:
                    r = paired[concurrency].result(db)
                else:
                    print(
                        f"==> load: {args.messages} messages over {args.channels} channels at C={concurrency}",
                        flush=True,
                    )
                    profilers = _start_profilers(stack, out_dir, concurrency) if args.profile else []
                    try:
                        r = run_load(stack, db, messages=args.messages, channels=args.channels, concurrency=concurrency)
                    finally:
                        for profiler in profilers:
                            profiler.send_signal(2)  # SIGINT: py-spy writes its file and exits
                        for profiler in profilers:
                            profiler.wait(30)
                print(f"    load C={concurrency}: {r['throughput_msg_s']} msg/s, p50 {r['latency_ms']['p50']} ms, "
                      f"p99 {r['latency_ms']['p99']} ms, correct: {r['correct']}", flush=True)  # fmt: skip
                if results.get("floor"):
                    r["fraction_of_floor"] = f"{r['throughput_msg_s'] / results['floor']['throughput_msg_s']:.0%}"
                results["load"].append(r)
        if "growth" in modes:
            results["growth"] = []
            print(f"==> growth: sizes {args.growth_sizes}, {args.growth_messages} messages each at C=1", flush=True)
            results["growth"] = run_growth(stack, db, sizes=args.growth_sizes, messages=args.growth_messages)
        client.close()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - keep what was measured
        traceback.print_exc()
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        stack.stop()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["targets"] = report.check_targets(results)
    report.write_json(out_dir / "results.json", results)
    plotted = report.write_plot(out_dir / "growth.png", results)
    print()
    print(report.render(results))
    print(
        f"\n==> {out_dir}/results.json"
        + (f", {out_dir}/growth.png" if plotted else "")
        + f" ({results['duration_s']} s)"
    )
    correctness_missed = any(not c["met"] for c in results["targets"] if c["kind"] == "correctness")
    performance_missed = any(not c["met"] for c in results["targets"] if c["kind"] == "performance")
    if results.get("error"):
        print(f"==> Stopped early: {results['error']}")
        return 1
    if correctness_missed or (args.strict and performance_missed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
