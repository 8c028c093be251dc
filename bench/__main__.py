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
from bench.floor import run_floor
from bench.stack import DB_NAME, ROOT, Stack
from bench.workload import run_growth, run_load, warm_up


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
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


def _start_profiler(stack: Stack, out_dir: Path, concurrency: int) -> subprocess.Popen[bytes] | None:
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("    (py-spy not installed; skipping the profile)", flush=True)
        return None
    # The master forks the worker(s); --subprocesses follows them. Idle threads are left out.
    return subprocess.Popen(
        [str(py_spy), "record", "--pid", str(stack.gunicorn.pid), "--subprocesses", "--rate", "200",  # type: ignore[union-attr]
         "--format", "speedscope", "--output", str(out_dir / f"profile-c{concurrency}.speedscope.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


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
    print(f"==> Starting a fresh embedded database, migrating, gunicorn {workers} worker(s) x {threads} threads", flush=True)
    started = time.monotonic()
    stack = Stack(out_dir=out_dir, workers=workers, threads=threads, log_level="info")
    try:
        stack.start()
        client: MongoClient = MongoClient(stack.mongo.url)
        db = client[DB_NAME]
        print(f"    ready in {time.monotonic() - started:.1f} s; warming up", flush=True)
        warm_up(stack)
        if "load" in modes:
            results["load"] = []
            for concurrency in args.concurrency:
                print(f"==> load: {args.messages} messages over {args.channels} channels at C={concurrency}", flush=True)
                profiler = _start_profiler(stack, out_dir, concurrency) if args.profile else None
                try:
                    r = run_load(stack, db, messages=args.messages, channels=args.channels, concurrency=concurrency)
                finally:
                    if profiler:
                        profiler.send_signal(2)  # SIGINT: py-spy writes its file and exits
                        profiler.wait(30)
                print(f"    {r['throughput_msg_s']} msg/s, p50 {r['latency_ms']['p50']} ms, "
                      f"p99 {r['latency_ms']['p99']} ms, correct: {r['correct']}", flush=True)  # fmt: skip
                results["load"].append(r)
        if "floor" in modes:
            print(f"==> floor: {args.messages} messages, {args.floor_threads} threads, pymongo + requests", flush=True)
            f = run_floor(stack, db, messages=args.messages, channels=args.channels, threads=args.floor_threads)
            print(f"    {f['throughput_msg_s']} msg/s, p50 {f['latency_ms']['p50']} ms", flush=True)
            results["floor"] = f
            for r in results.get("load", []):
                r["fraction_of_floor"] = f"{r['throughput_msg_s'] / f['throughput_msg_s']:.0%}"
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
    print(f"\n==> {out_dir}/results.json" + (f", {out_dir}/growth.png" if plotted else "") + f" ({results['duration_s']} s)")
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
