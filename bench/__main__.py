"""`make bench`: ingest and end-to-end load, the floor, two scenarios and growth, on a fresh
stack started for this run.

    make bench                                  # everything: under 10 minutes on 2 cores, plus data at scale (about 30)
    make bench ARGS="--quick"                   # a smoke test in about a minute
    make bench ARGS="--mode load --messages 5000 --channels 16 --concurrency 16,64"
    make bench ARGS="--mode floor --floor-threads 2,4"
    make bench ARGS="--mode simple"             # the simplest-design floor alone
    make bench ARGS="--mode load,floor"         # the C=16 load beside both floors, and the other loads
    make bench ARGS="--mode load --profile"     # py-spy profiles of gunicorn, the worker and the database
    make bench ARGS="--mode llm"                # the LLM stage: LLM-bound, provider limit, noisy bot, capacity
    make bench ARGS="--mode scale-data"         # every admin and API page at 100,000 and 250,000 messages
    make bench ARGS="--mode widgets"            # 1,000 open web chat widgets, 100 sending every 10 s
    make bench ARGS="--mode inbox"              # the database's cost of 50 open operators' inboxes
    make bench ARGS="--mode scale-data --scale-sizes 100000 --scale-hold"  # seeded and kept up, to profile by hand
    make bench ARGS="--mode scale-data --scale-hold"  # the same at 250,000, after the 100,000 run (as the bench)

The app is served exactly as `make run` serves it (gunicorn with SERVER_WORKERS x
SERVER_THREADS, and the worker beside it); results go to bench-results/<timestamp>/
(results.json, growth.png, logs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from bench import report
from bench.dbstats import DbCounters, index_entries, index_weights
from bench.idle import first_after_quiet, idle_cost
from bench.llmstage import SCENARIOS as LLM_SCENARIOS
from bench.scenarios import slow_llm, slow_neighbour
from bench.simple import DB_NAME as SIMPLE_DB_NAME
from bench.stack import DB_NAME, ROOT, Stack
from bench.workload import FloorRun, LoadRun, SimpleRun, warm_up
from core.env import env_normalize

# The in-memory server's WiredTiger cache, in every mode (a limit, not an allocation: it holds
# what the run writes). Data at scale needs it: 250,000 messages and their indexes overflow the
# default 1G. The other modes too: at 1G, after the growth run's 10,000-message dialogue, an
# eviction thread of the server kept one core busy at 58 % to the end of the run, on the core
# the server is held to (docs/internals.md, "Known quirks").
SERVER_CACHE = "6G"
MODES = ["load", "floor", "simple", "scenarios", "llm", "growth", "diagnose", "scale-data", "widgets", "inbox"]
# The pipeline's code: its hash is recorded with the results, and a change during the run is
# reported (other people edit the tree while the benchmark runs).
PIPELINE_FILES = ["dialogues/ingest.py", "dialogues/store/reservation.py", "dialogues/store/claims.py",
                  "dialogues/store/replies.py", "dialogues/store/messages.py", "worker/loop.py",
                  "worker/pipeline.py", "worker/delivery.py", "worker/steps.py", "worker/bulkheads.py",
                  "channels_app/breaker.py", "channels_app/dispatch.py", "channels_app/outgoing_http.py",
                  "worker/tasks.py", "llm/client.py", "llm/aio.py", "llm/pacing.py", "llm/openai_backend.py",
                  "bench/floor.py", "bench/simple.py"]  # fmt: skip


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _modes(text: str) -> str | list[str]:
    if text == "all":
        return text
    modes = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode {', '.join(unknown)!r}: all, or some of {', '.join(MODES)}")
    return modes


def _llm_scenarios(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in LLM_SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown scenario {', '.join(unknown)!r}: some of {', '.join(LLM_SCENARIOS)}")
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mode", type=_modes, default="all",
                        help=f"all, or one or more of {', '.join(MODES)}, comma-separated (load,floor: the C=16 load "
                        "beside both floors)")  # fmt: skip
    parser.add_argument("--messages", type=int, help="customer messages per load run (default 2000; quick 200)")
    parser.add_argument("--channels", type=int, help="channels (one dialogue each) per run (default 8; quick 4)")
    parser.add_argument("--concurrency", type=_ints, help="comma-separated load concurrencies (default 16,64)")
    parser.add_argument(
        "--other-messages",
        type=int,
        help="messages of the loads at other concurrencies than 16 (default 1000; quick 200)",
    )
    parser.add_argument("--floor-threads", type=_ints, help="floor thread counts to try (default 1,2,4,8)")
    parser.add_argument("--floor-messages", type=int, help="messages per floor thread count (default 1000)")
    parser.add_argument("--simple-messages", type=int, help="messages of the simplest-design floor (default: "
                        "--messages)")  # fmt: skip
    parser.add_argument(
        "--moderate-rates",
        type=_ints,
        help="messages/s of the open-loop runs (default 10,20,30; the latency target is read at 20)",
    )
    parser.add_argument("--moderate-messages", type=int, help="messages per open-loop run (default 300; quick 60)")
    parser.add_argument("--scenario-messages", type=int, help="bot A's messages per slow-neighbour run (default 600)")
    parser.add_argument("--slow-llm-messages", type=int, help="messages of the slow-LLM run (default 96)")
    parser.add_argument("--llm-scenarios", type=_llm_scenarios, default=list(LLM_SCENARIOS),
                        help=f"the LLM stage's scenarios, comma-separated (default all: "
                        f"{','.join(LLM_SCENARIOS)})")  # fmt: skip
    parser.add_argument("--growth-sizes", type=_ints, help="dialogue sizes (default 10,1000,10000)")
    parser.add_argument("--growth-messages", type=int, help="messages sent at each size (default 200)")
    parser.add_argument("--diagnose-messages", type=int, help="messages of the diagnostic phase (default 600)")
    parser.add_argument("--growth-rate", type=float, default=20.0, help="messages/s at each size (default 20)")
    parser.add_argument("--scale-dialogues", type=int, help="dialogues seeded for scale-data (default 25000)")
    parser.add_argument("--scale-sizes", type=_ints, help="messages seeded, one size after the other (default "
                        "100000,250000)")  # fmt: skip
    parser.add_argument(
        "--scale-samples",
        type=int,
        help="requests per page at each size, at least (default 20: a p95 of 10 was the slowest but one, one stray "
        "request); each page is sampled for 4 s, up to 100 requests",
    )
    parser.add_argument("--scale-baseline-s", type=float, help="seconds of webhook traffic alone (default 60)")
    parser.add_argument("--scale-hold", action="store_true", help="scale-data: after seeding the last size (the "
                        "sizes before it measured as usual), keep the stack up with its webhook traffic and print "
                        "where to reach it, until Ctrl-C (for profiling a page by hand)")  # fmt: skip
    parser.add_argument("--idle-s", type=float, help="seconds the idle database CPU is read over (default 10; "
                        "quick 5)")  # fmt: skip
    parser.add_argument("--quiet-s", type=float, default=5.0, help="quiet before each first-message-after-quiet "
                        "(default 5)")  # fmt: skip
    parser.add_argument("--quiet-times", type=int, default=3, help="first messages after quiet (default 3)")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke test of the benchmark itself")
    parser.add_argument("--profile", action="store_true", help="record py-spy profiles during the C=16 load")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a performance target is missed too")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = parser.parse_args(argv)
    quick = args.quick
    args.messages = args.messages or (200 if quick else 2000)
    args.channels = args.channels or (4 if quick else 8)
    args.concurrency = args.concurrency or ([16] if quick else [16, 64])
    args.floor_threads = args.floor_threads or ([2, 8] if quick else [1, 2, 4, 8])
    args.floor_messages = args.floor_messages or (100 if quick else 1000)
    args.simple_messages = args.simple_messages or args.messages
    args.moderate_rates = args.moderate_rates or ([10, 20] if quick else [10, 20, 30])
    args.moderate_messages = args.moderate_messages or (60 if quick else 300)
    args.scenario_messages = args.scenario_messages or (100 if quick else 600)
    args.other_messages = args.other_messages or (200 if quick else 1000)
    args.slow_llm_messages = args.slow_llm_messages or (16 if quick else 96)
    args.growth_sizes = args.growth_sizes or ([10, 1000] if quick else [10, 1000, 10000])
    args.growth_messages = args.growth_messages or (30 if quick else 200)
    args.diagnose_messages = args.diagnose_messages or (100 if quick else 600)
    args.scale_dialogues = args.scale_dialogues or (500 if quick else 25_000)
    args.scale_sizes = args.scale_sizes or ([2000, 5000] if quick else [100_000, 250_000])
    args.scale_samples = args.scale_samples or (3 if quick else 20)
    # 60 s: 1,200 messages, so the baseline's p99 is not its 4th-largest latency (20 s: it
    # ranged 14.3-22.9 ms over the runs of 2026-12-07, for the same code and data).
    args.scale_baseline_s = args.scale_baseline_s or (5.0 if quick else 60.0)
    args.idle_s = args.idle_s or (5.0 if quick else 10.0)
    return args


def _start_profilers(stack: Stack, out_dir: Path, concurrency: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on gunicorn (master and forked workers), the worker and the database server, as
    speedscope files (open them at speedscope.app or summarise them with `python -m bench.profile`)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("    (py-spy not installed; skipping the profile)", flush=True)
        return []
    targets = {"app": stack.gunicorn.pid, "worker": stack.worker.pid,  # type: ignore[union-attr]
               "database": stack.mongo.process.pid}  # type: ignore[union-attr]  # fmt: skip
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


def _stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    for profiler in profilers:
        profiler.send_signal(2)  # SIGINT: py-spy writes its file and exits
    for profiler in profilers:
        profiler.wait(30)


def pipeline_hash() -> dict[str, str]:
    return {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest()[:12] for name in PIPELINE_FILES
            if (ROOT / name).exists()}  # fmt: skip


_T0 = time.monotonic()


def say(text: str, *, flush: bool = True) -> None:
    """A progress line, with the time since the start."""
    print(f"[{time.monotonic() - _T0:5.0f} s] {text}", flush=flush)


def _line(name: str, r: dict[str, Any]) -> str:
    i, e = r["ingest"], r["e2e"]
    lat = i["latency_ms"]
    return (f"    {name}: ingest {i['acks_per_s']} acks/s (p50 {lat['p50']}, p99 {lat['p99']} ms)"
            f"; e2e {e['replies_per_s']} replies/s (ack->receipt p50 {e['ack_to_receipt_ms']['p50']}, "
            f"p99 {e['ack_to_receipt_ms']['p99']} ms); correct: {r['correct']}")  # fmt: skip


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # SIGTERM (and SIGINT, which a shell ignores in a job it started in the background) stop the
    # run like Ctrl-C: what was measured so far is still written and reported.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    env_normalize(os.environ)  # old names (MONGO__URL, SERVER__WORKERS) still work
    os.chdir(ROOT)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = args.out / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = os.environ.get("SERVER_WORKERS", "1")
    threads = os.environ.get("SERVER_THREADS", "8")
    modes = MODES if args.mode == "all" else args.mode
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())  # fmt: skip
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench" + (f' ARGS="{" ".join(argv)}"' if argv else ""),
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model, "python": platform.python_version(),
                    "platform": platform.platform(), "load_average_at_start": os.getloadavg()},
        "server": {"workers": workers, "threads": threads, "database": "secantusd (embedded), in memory, fresh"},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)} | {"modes": modes},
        "pipeline_code": pipeline_hash(),
    }  # fmt: skip
    results["settings"]["out"] = str(out_dir)
    say(f"==> Results in {out_dir.relative_to(ROOT) if out_dir.is_relative_to(ROOT) else out_dir}", flush=True)
    say(f"==> Starting a fresh embedded database, migrating, gunicorn {workers} worker(s) x {threads} threads "
          f"and the worker", flush=True)  # fmt: skip
    started = time.monotonic()
    stack = Stack(out_dir=out_dir, workers=workers, threads=threads, log_level="info", cache_size=SERVER_CACHE)
    simple: SimpleRun | None = None
    try:
        stack.start()
        results["server"]["worker_threads"] = stack.worker_threads()
        results["server"]["worker_env"] = {k: v for k, v in os.environ.items() if k.startswith(("WORKER_", "LLM_"))}
        # The app's client options (one connection), so the floor writes as the app does.
        client: MongoClient = MongoClient(stack.mongo.app_url)
        db = client[DB_NAME]
        counters = DbCounters(stack.mongo.url, DB_NAME)
        print(f"    ready in {time.monotonic() - started:.1f} s (worker: {stack.worker_threads()} threads); "
              f"warming up", flush=True)  # fmt: skip
        warm_up(stack)
        say(f"==> idle: {args.idle_s:g} s with nothing to do, then {args.quiet_times} messages each after "
            f"{args.quiet_s:g} s of quiet", flush=True)  # fmt: skip
        results["idle"] = idle = idle_cost(stack, counters, seconds=args.idle_s)
        results["idle"]["first_after_quiet"] = quiet = first_after_quiet(
            stack, times=args.quiet_times, quiet_s=args.quiet_s
        )
        print(f"    idle: database {idle['database_cpu_percent_of_core']} % of a core, "
              f"{idle['dialogue_finds_per_s']} dialogue finds/s; first message after quiet: ack->receipt "
              f"{quiet['ack_to_receipt_ms']} ms", flush=True)  # fmt: skip

        # The embedded server slows down as it fills, so whatever runs first looks faster. The
        # C=16 load, the simplest-design floor and the floor at each thread count therefore run
        # interleaved, in two halves ordered load, simple, floors ascending | floors descending,
        # simple, load (a mirror cancels a steady drift), on the same server; the rest follows
        # on its own.
        load_runs: dict[int, LoadRun] = {}
        floors: list[FloorRun] = []
        paired_c = 16 if 16 in args.concurrency else args.concurrency[0]
        if "load" in modes:
            load_runs[paired_c] = LoadRun(stack, counters, channels=args.channels, concurrency=paired_c,
                                          name=f"load-c{paired_c}")  # fmt: skip
        if "load" in modes or "simple" in modes:
            simple = SimpleRun(stack, channels=args.channels, concurrency=paired_c)
        if "floor" in modes:
            floors = [FloorRun(stack, counters, db, channels=args.channels, threads=t, db_name=DB_NAME)
                      for t in args.floor_threads]  # fmt: skip
        if load_runs or floors or simple:
            parts = [f"load C={paired_c}"] if load_runs else []
            parts += [f"the simplest design at C={paired_c}"] if simple else []
            parts += [f"floor at {args.floor_threads} threads"] if floors else []
            what = " and ".join(parts)
            say(f"==> {what}: interleaved in two halves", flush=True)
            halves: list[list[tuple[LoadRun | FloorRun | SimpleRun, int]]] = [[], []]
            if load_runs:
                for half, n in zip(halves, _split(args.messages, 2), strict=True):
                    half.append((load_runs[paired_c], n))
            if simple:
                for half, n in zip(halves, _split(args.simple_messages, 2), strict=True):
                    half.append((simple, n))
            for floor in floors:
                for half, n in zip(halves, _split(args.floor_messages, 2), strict=True):
                    half.append((floor, n))
            order = halves[0] + list(reversed(halves[1]))
            for runner, n in order:
                if isinstance(runner, LoadRun):
                    label = f"load C={paired_c}"
                elif isinstance(runner, SimpleRun):
                    label = f"simple C={paired_c}"
                else:
                    label = f"floor T={runner.threads}"
                profilers = []
                if args.profile and isinstance(runner, LoadRun):
                    profilers = _start_profilers(stack, out_dir, paired_c)
                try:
                    runner.segment(n)
                finally:
                    _stop_profilers(profilers)
                print(f"    {label}: segment of {n} done", flush=True)
            # Index entries written per message: each collection's writes times its indexes,
            # weighted as the collections stand now (bench.dbstats).
            weights = {DB_NAME: index_weights(db), SIMPLE_DB_NAME: index_weights(client[SIMPLE_DB_NAME])}
            results["index_weights"] = weights
            if floors:
                results["floor"] = [f.result(db) for f in floors]
                for f, floor in zip(results["floor"], floors, strict=True):
                    f["index_entries"] = index_entries(floor.db, weights[DB_NAME], messages=f["messages"])
                    print(_line(f"floor T={f['threads']}", f), flush=True)
            if simple:
                r = simple.result()
                r["index_entries"] = index_entries(simple.db, weights[SIMPLE_DB_NAME], messages=r["messages"])
                results["simple"] = r
                print(_line(f"simple C={paired_c}", r), flush=True)
            results["load"] = []
            if load_runs:
                r = load_runs[paired_c].result(db)
                r["index_entries"] = index_entries(load_runs[paired_c].db, weights[DB_NAME], messages=r["messages"])
                print(_line(f"load C={paired_c}", r), flush=True)
                results["load"].append(r)

        if "load" in modes:
            # Fixed rates, an open loop each: the latency at loads the stack keeps up with. At low
            # load every message gets its own claim, so it costs the database more than under
            # C=16; half the C=16 rate is already close to saturation.
            results["moderate"] = []
            for rate in args.moderate_rates:
                say(f"==> moderate load: {args.moderate_messages} messages at {rate:g}/s (open loop)", flush=True)
                moderate = LoadRun(stack, counters, channels=args.channels, concurrency=0, name=f"moderate-{rate}")
                moderate.segment_at_rate(args.moderate_messages, rate=float(rate))
                results["moderate"].append(moderate.result(db))
                print(_line(f"moderate {rate}/s", results["moderate"][-1]), flush=True)
            for concurrency in args.concurrency:
                if concurrency in load_runs:
                    continue
                say(f"==> load: {args.other_messages} messages over {args.channels} channels at C={concurrency}",
                      flush=True)  # fmt: skip
                run = LoadRun(stack, counters, channels=args.channels, concurrency=concurrency,
                              name=f"load-c{concurrency}")  # fmt: skip
                run.segment(args.other_messages)
                r = run.result(db)
                print(_line(f"load C={concurrency}", r), flush=True)
                results["load"].append(r)

        if "scenarios" in modes:
            c = paired_c
            say(f"==> slow neighbour: bot A {args.scenario_messages} messages at C={c}, alone, then while "
                  f"bot B's channels hang", flush=True)  # fmt: skip
            results["slow_neighbour"] = sn = slow_neighbour(
                stack, counters, db, messages=args.scenario_messages, channels=args.channels, concurrency=c
            )
            print(_line("A alone", sn["alone"]), flush=True)
            print(_line("A with B", sn["with_b"]), flush=True)
            say(f"==> slow LLM: worker restarted with LLM_MOCK_DELAY_MS=2000; {args.slow_llm_messages} messages "
                  f"at C={c}", flush=True)  # fmt: skip
            results["slow_llm"] = sl = slow_llm(
                stack, counters, db, messages=args.slow_llm_messages, channels=args.channels, concurrency=c
            )
            print(_line("slow LLM", sl) + f"; every reply after {sl['all_replies_s']} s", flush=True)

        if "llm" in modes:
            from bench.llmstage import run_llm_stage

            say(f"==> LLM stage: {', '.join(args.llm_scenarios)} (the worker restarted for each)")
            results["llm_stage"] = {}
            run_llm_stage(stack, quick=args.quick, scenarios=args.llm_scenarios, results=results["llm_stage"])
        if "widgets" in modes:
            from bench.widgets import run_widgets

            say("==> widget scale: open web chat widgets on the stream, some of them sending", flush=True)
            results["widgets"] = run_widgets(stack, say=lambda text: print(text, flush=True))
            w = results["widgets"]
            screen, before, opened = w["reply_to_screen_ms"], w["before"]["stream"], w["open"]["stream"]
            print(f"    reply-to-screen p50 {screen['p50']} ms, p99 {screen['p99']} ms (LLM {w['llm_delay_ms']} ms); "
                  f"stream threads {before['threads']} -> {opened['threads']} with {w['widgets']} open, "
                  f"RSS {before['rss_mb']} -> {opened['rss_mb']} MB", flush=True)  # fmt: skip
        if "inbox" in modes:
            from bench.inbox import run_inbox

            say("==> open inboxes: none, one and 50, each asking for the list every 2 s", flush=True)
            results["inbox"] = run_inbox(stack, say=lambda text: print(text, flush=True))
            for window in results["inbox"]["windows"]:
                print(
                    f"    {window['tabs']} tab(s): inbox {window['inbox_db_queries_per_s']} db queries/s, "
                    f"answer p50 {window['answer_ms']['p50']} ms p99 {window['answer_ms']['p99']} ms",
                    flush=True,
                )
        if "growth" in modes:
            from bench.workload import run_growth

            say(f"==> growth: sizes {args.growth_sizes}, {args.growth_messages} messages each, "
                  f"{args.growth_rate:g}/s", flush=True)  # fmt: skip
            results["growth"] = run_growth(stack, db, sizes=args.growth_sizes, messages=args.growth_messages,
                                           rate=args.growth_rate)  # fmt: skip
        if "diagnose" in modes:
            from bench.diagnose import diagnose
            from bench.report import best_floor

            best = best_floor(results)
            floor_t = int(best["threads"]) if best else 4
            say(f"==> diagnose: {args.diagnose_messages} messages at C={paired_c}, then the floor at T={floor_t}, "
                  f"every operation counted by purpose through a proxy", flush=True)  # fmt: skip
            results["diagnosis"] = diagnose(stack, counters, messages=args.diagnose_messages, channels=args.channels,
                                            concurrency=paired_c, floor_threads=floor_t)  # fmt: skip
        if "scale-data" in modes:
            from bench.datascale import PAGE_MIN_S, run_data_scale
            from bench.seed import seed_client

            say(f"==> data at scale: {args.scale_dialogues} dialogues, sizes {args.scale_sizes} messages, every "
                f"admin and API page {args.scale_samples} times while the webhook takes {args.growth_rate:g} "
                f"msg/s", flush=True)  # fmt: skip
            seeding = seed_client(stack.mongo.url)
            results["data_scale"] = {}
            try:
                run_data_scale(
                    stack, seeding[DB_NAME], dialogues=args.scale_dialogues, sizes=args.scale_sizes,
                    rate=args.growth_rate, samples=args.scale_samples, baseline_s=args.scale_baseline_s,
                    page_min_s=0.0 if args.quick else PAGE_MIN_S,
                    hold=args.scale_hold,
                    say=lambda text: print(text, flush=True), result=results["data_scale"],
                )  # fmt: skip
            finally:
                seeding.close()
        counters.close()
        client.close()
    except (Exception, KeyboardInterrupt, SystemExit) as exc:  # noqa: BLE001 - keep what was measured
        traceback.print_exc()
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if simple is not None:
            simple.close()
        stack.stop()
    results["duration_s"] = round(time.monotonic() - started, 1)
    if pipeline_hash() != results["pipeline_code"]:
        changed = [k for k, v in pipeline_hash().items() if results["pipeline_code"].get(k) != v]
        results["pipeline_changed_during_run"] = changed
        print(f"WARNING: the pipeline's code changed during this run ({', '.join(changed)}): restarted processes "
              "(the slow-LLM worker, the diagnostic phase) ran newer code than the first ones.")  # fmt: skip
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
        say(f"==> Stopped early: {results['error']}")
        return 1
    if correctness_missed or (args.strict and performance_missed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
