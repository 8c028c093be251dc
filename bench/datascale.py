"""Data at scale: every admin and API page timed at two data sizes (seeded straight into the
database by bench.seed), while webhook traffic runs at a steady rate (an open loop).

At each size: the webhook alone for a while (its baseline), then the same traffic while
every page is requested in turn, one request at a time. The admin's pages are found from
what the admin renders (the app list of the dashboard, each list's filter options and
sortable columns), so a new filter or column is covered without a change here.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urljoin

import requests
from bson import ObjectId
from pymongo.database import Database

from bench.seed import chat_id_of, seed
from bench.stack import USERNAME, Stack
from bench.stats import percentile, summarize
from bench.workload import Sent, drive_at_rate, message_body, wait_for_replies

PAGE_P95_TARGET_MS = 500.0
GROWTH_RATIO_TARGET = 1.5
WEBHOOK_P99_RATIO_TARGET = 2.0
# A page this slow, or failing, is sampled fewer times: its figure is already a miss, and
# the run must end in reasonable time.
SLOW_MS = 2000.0
SLOW_SAMPLES = 3
# A page is sampled for at least this long, up to PAGE_SAMPLES_MAX requests: 20 requests of
# a 10 ms page last 0.2 s, and their p95 (the slowest but one) is whichever stray request fell
# in that window. Across 14 runs of 20 samples, /api/channels/ had a p95 of 11-46 ms at the
# same size, and a held stack at 250,000 messages answered it as fast as at 100,000 (p95
# 10.8 ms at both): the growth target compared two draws, not two sizes. At 1.5 s, a 100 ms
# page (20 requests) still went from x1.07 to x1.52 on two slow requests in one run of four.
PAGE_MIN_S = 4.0
PAGE_SAMPLES_MAX = 100
REQUEST_TIMEOUT_S = 30.0
RELATED_OPTIONS = 2
TRAFFIC_PATH = "/hook/data-scale"


# --- finding the pages -------------------------------------------------------------------


def admin_session(stack: Stack) -> requests.Session:
    """Signed in to the admin as the bench's superuser."""
    session = requests.Session()
    login = stack.app_url + "/admin/login/"
    page = session.get(login, timeout=REQUEST_TIMEOUT_S)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if token is None:
        raise SystemExit("error: no CSRF token on the admin's sign-in page")
    answer = session.post(
        login,
        data={"csrfmiddlewaretoken": token.group(1), "username": USERNAME, "password": stack.password,
              "next": "/admin/"},
        headers={"Referer": login},
        timeout=REQUEST_TIMEOUT_S,
    )  # fmt: skip
    if answer.status_code != 200 or 'id="login-form"' in answer.text:
        raise SystemExit(f"error: could not sign in to the admin ({answer.status_code})")
    return session


def _hrefs(fragment: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', fragment)]


def changelists(dashboard_html: str) -> list[str]:
    """The lists the dashboard links to (`/admin/<app>/<model>/`), in its order."""
    seen: list[str] = []
    for href in _hrefs(dashboard_html):
        if re.fullmatch(r"/admin/[a-z_]+/[a-z_]+/", href) and href not in seen:
            seen.append(href)
    return seen


def list_variants(changelist_html: str, *, prefer: set[str] | frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """A list's query strings: each filter option (from the filter panel, "All" left out:
    it is the list itself) and each sortable column, ascending and descending (`?o=N`).
    Options that pick one object by id (a bot, a channel) are one query each, whatever the
    object: RELATED_OPTIONS of them are kept, those naming an id in `prefer` first."""
    panel = re.search(r'<nav id="changelist-filter".*?</nav>', changelist_html, re.S)
    filters: list[str] = []
    by_object: dict[str, list[str]] = {}
    if panel:
        for href in _hrefs(panel.group(0)):
            if not href.startswith("?") or href == "?" or href in filters:
                continue
            query = parse_qs(href[1:])
            if len(query) == 1 and all(re.fullmatch(r"[0-9a-f]{24}", v) for v in next(iter(query.values()))):
                by_object.setdefault(next(iter(query)), []).append(href)
            else:
                filters.append(href)
    for options in by_object.values():
        options.sort(key=lambda href: not any(p in href for p in prefer))
        filters += options[:RELATED_OPTIONS]
    columns = sorted({int(n) for n in re.findall(r'<th[^>]*class="sortable[^"]*".*?href="\?o=(\d+)"',
                                                  changelist_html, re.S)})  # fmt: skip
    orderings = [f"?o={n}" for n in columns] + [f"?o=-{n}" for n in columns]
    searchable = 'id="searchbar"' in changelist_html
    return {"filters": filters, "orderings": orderings, "search": ["?q=" + chat_id_of(1)] if searchable else []}


def discover(stack: Stack, session: requests.Session, *, prefer: set[str]) -> list[dict[str, str]]:
    """Every admin list page to time: the lists, their filter options, searches and orderings."""
    dashboard = session.get(stack.app_url + "/admin/", timeout=REQUEST_TIMEOUT_S)
    pages = []
    for path in changelists(dashboard.text):
        page = session.get(stack.app_url + path, timeout=REQUEST_TIMEOUT_S)
        pages.append({"name": f"admin {path}", "path": path, "kind": "admin"})
        for kind, queries in list_variants(page.text, prefer=prefer).items():
            for query in queries:
                pages.append({"name": f"admin {path}{query}", "path": path + query, "kind": "admin", "variant": kind})
    return pages


def detail_pages(db: Database, *, admin_lists: list[str], seeded_bot: ObjectId) -> list[dict[str, str]]:
    """The admin's change pages and the API's detail pages of seeded objects: a paused
    dialogue, a failed reply, a bot, a channel (the channel's own dialogue too)."""
    dialogue = db.dialogues_dialogue.find_one({"chat_id": chat_id_of(13)}) or db.dialogues_dialogue.find_one(
        {"chat_bot_id": seeded_bot}
    )
    assert dialogue is not None, "no seeded dialogue"
    reply = db.dialogues_message.find_one({"chat_bot_id": seeded_bot, "delivery_state": "failed"})
    message = reply or db.dialogues_message.find_one({"dialogue_id": dialogue["_id"]})
    assert message is not None
    channel = db.channels_app_channel.find_one({"chat_bot_id": seeded_bot})
    assert channel is not None
    ids = {"dialogue": dialogue["_id"], "delivery": message["_id"], "message": message["_id"],
           "chatbot": seeded_bot, "channel": channel["_id"]}  # fmt: skip
    pages = [{"name": "admin /admin/ (dashboard)", "path": "/admin/", "kind": "admin"}]
    for path in admin_lists:
        model = path.rstrip("/").rsplit("/", 1)[-1]
        if model in ids:
            pages.append({"name": f"admin {path}<{model}>/change/", "path": f"{path}{ids[model]}/change/",
                          "kind": "admin"})  # fmt: skip
    d, c, b = dialogue["_id"], channel["_id"], seeded_bot
    pages += [
        {"name": "api /api/dialogues/", "path": "/api/dialogues/", "kind": "api"},
        {"name": "api /api/dialogues/?chat_bot_id=", "path": f"/api/dialogues/?chat_bot_id={b}", "kind": "api"},
        {"name": "api /api/dialogues/?channel_id=", "path": f"/api/dialogues/?channel_id={c}", "kind": "api"},
        {"name": "api /api/dialogues/?chat_id=", "path": f"/api/dialogues/?chat_id={chat_id_of(13)}", "kind": "api"},
        {"name": "api /api/dialogues/ (cursor, next page)", "path": "next:/api/dialogues/", "kind": "api"},
        {"name": "api /api/dialogues/{id}/", "path": f"/api/dialogues/{d}/", "kind": "api"},
        {"name": "api /api/dialogues/{id}/messages/", "path": f"/api/dialogues/{d}/messages/", "kind": "api"},
        {"name": "api /api/channels/", "path": "/api/channels/", "kind": "api"},
        {"name": "api /api/channels/{id}/", "path": f"/api/channels/{c}/", "kind": "api"},
        {"name": "api /api/channels/{id}/dialogue", "path": f"/api/channels/{c}/dialogue", "kind": "api"},
        {"name": "api /api/chatbots/", "path": "/api/chatbots/", "kind": "api"},
        {"name": "api /api/chatbots/{id}/", "path": f"/api/chatbots/{b}/", "kind": "api"},
    ]
    return pages


# --- timing ------------------------------------------------------------------------------------


def _resolve(page: dict[str, str], get: Callable[[str], requests.Response]) -> str | None:
    """A page's path; `next:<list>` is the list's next page, from its `next` link."""
    path = page["path"]
    if not path.startswith("next:"):
        return path
    try:
        first = get(path[len("next:") :]).json()
    except (requests.RequestException, ValueError):
        return None
    return first.get("next") if isinstance(first, dict) else None


def time_page(
    stack: Stack, page: dict[str, str], session: requests.Session, samples: int, min_s: float = 0.0
) -> dict[str, Any]:
    """`samples` requests, and more (up to PAGE_SAMPLES_MAX) until `min_s` have passed."""
    headers = {"Authorization": f"Token {stack.api_token}"} if page["kind"] == "api" else {}

    def get(path: str) -> requests.Response:
        return session.get(urljoin(stack.app_url, path), headers=headers, timeout=REQUEST_TIMEOUT_S,
                           allow_redirects=False)  # fmt: skip

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    path = _resolve(page, get)
    if path is None:
        return {**page, "samples": 0, "statuses": {"no next page": 1}, "latency_ms": summarize([]), "p95": None}
    until = time.monotonic() + min_s
    while len(latencies) < samples or (time.monotonic() < until and len(latencies) < PAGE_SAMPLES_MAX):
        started = time.monotonic()
        try:
            status = str(get(path).status_code)
        except requests.RequestException as exc:
            status = type(exc).__name__
        latencies.append((time.monotonic() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
        if len(latencies) == 1 and (latencies[0] > SLOW_MS or status != "200"):
            samples, until = min(samples, SLOW_SAMPLES), 0.0
    ordered = sorted(latencies)
    return {**page, "samples": len(latencies), "statuses": statuses, "latency_ms": summarize(latencies),
            "p50": round(percentile(ordered, 50), 1), "p95": round(percentile(ordered, 95), 1),
            "ok": set(statuses) == {"200"}}  # fmt: skip


class Traffic:
    """Webhook messages at a steady rate in a thread of its own, until stopped."""

    def __init__(self, stack: Stack, *, secret: str, channel_ids: list[str], rate: float):
        self.stack, self.secret, self.channel_ids, self.rate = stack, secret, channel_ids, rate
        self.sent: Sent | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self._offset = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def go() -> Sent:
            self._stop = asyncio.Event()
            self._started.set()
            offset = self._offset
            return await drive_at_rate(
                url=self.stack.app_url, secret=self.secret, rate=self.rate, stop=self._stop,
                make_body=lambda i: message_body(chat_id=self.channel_ids[i % len(self.channel_ids)], index=offset + i),
            )  # fmt: skip

        self.sent = self._loop.run_until_complete(go())

    def __enter__(self) -> Traffic:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(120)
        self._loop.close()


# Webhook traffic before each baseline, not measured.
WARM_UP_S = 10.0
# The database is quiet again below this share of a core (the idle worker costs under 1 %).
QUIET_DATABASE_CPU = 0.05


def settle(stack: Stack, *, expected: int, timeout_s: float = 180.0) -> float:
    """Waits until the traffic's `expected` replies have arrived, /readyz answers 200 three
    times in a row and the database has been quiet for two seconds in a row (or `timeout_s`);
    returns the seconds it took. The quiet: after the seeding's writes the in-memory server's
    WiredTiger eviction threads can stay busy for a minute or more (docs/internals.md, "Known
    quirks"), and a baseline taken meanwhile measured them (webhook p99 492 ms alone)."""
    started = time.monotonic()
    if expected:
        wait_for_replies(stack, path=TRAFFIC_PATH, expected=expected, stall_s=30.0)
    ready = 0
    while ready < 3 and time.monotonic() - started < timeout_s:
        try:
            ready = ready + 1 if requests.get(stack.app_url + "/readyz", timeout=5).status_code == 200 else 0
        except requests.RequestException:
            ready = 0
        time.sleep(0.5)
    quiet = 0
    while quiet < 2 and time.monotonic() - started < timeout_s:
        before = stack.cpu_seconds()["database"]
        time.sleep(1.0)
        quiet = quiet + 1 if stack.cpu_seconds()["database"] - before < QUIET_DATABASE_CPU else 0
    return round(time.monotonic() - started, 1)


# The processes whose CPU a page costs: the database (the embedded server runs under one GIL,
# so its busy time is what the webhook waits behind) and the app.
CPU_OF_PAGE = {"database": "database", "app (gunicorn)": "app"}


def _cpu_rate(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """CPU seconds per second of each process of the stack over an interval."""
    return {name: (after[name] - before[name]) / max(seconds, 1e-6) for name in CPU_OF_PAGE}


def _page_cpu_ms(
    before: dict[str, float], after: dict[str, float], seconds: float, traffic: dict[str, float], samples: int
) -> dict[str, float]:
    """CPU ms per request of a page, beyond what the webhook traffic costs at the same time
    (its rate measured while it ran alone); the clock ticks 100 times a second, so a page's few
    requests are known to about 10 ms over their count."""
    used = _cpu_rate(before, after, seconds)
    return {
        short: round(max(used[name] - traffic[name], 0.0) * seconds * 1000 / max(samples, 1), 1)
        for name, short in CPU_OF_PAGE.items()
    }


def _hold(stack: Stack, *, secret: str, channel_ids: list[str], rate: float, say: Callable[[str], None]) -> None:
    """The seeded stack with its webhook traffic, kept up until Ctrl-C: to time or profile a
    page by hand (`py-spy dump --pid` on gunicorn or the database, the database's `top`)."""
    # The sign-ins go to a file only its owner reads, not to the terminal (or a log of it).
    where = stack.out_dir / "hold.json"
    where.touch(mode=0o600)
    where.write_text(json.dumps({
        "admin": f"{stack.app_url}/admin/", "username": USERNAME, "password": stack.password,
        "api_token": stack.api_token, "database": stack.mongo.url, "gunicorn_pids": stack.gunicorn_pids(),
        "database_pid": stack.mongo.process.pid if stack.mongo.process else None,
    }, indent=2))  # fmt: skip
    say(f"    holding at {stack.app_url}, webhook at {rate:g} msg/s; sign-ins and pids in {where}; Ctrl-C stops")
    with Traffic(stack, secret=secret, channel_ids=channel_ids, rate=rate):
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            say("    stopped holding")


def _webhook(sent: Sent | None) -> dict[str, Any]:
    if sent is None:
        return {"messages": 0}
    return {"messages": len(sent.latencies_ms) + sum(sent.errors.values()), "latency_ms": summarize(sent.latencies_ms),
            "statuses": {str(k): v for k, v in sorted(sent.statuses.items())}, "errors": sent.errors,
            "status_503": sent.statuses.get(503, 0), "non_2xx": sent.non_2xx}  # fmt: skip


def run_data_scale(
    stack: Stack, db: Database, *, dialogues: int, sizes: list[int], rate: float, samples: int, baseline_s: float,
    page_min_s: float = PAGE_MIN_S, say: Callable[[str], None] = print, result: dict[str, Any] | None = None,
    hold: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Fills `result` as it goes (what was measured stays if the run stops early)."""
    started = time.monotonic()
    result = {} if result is None else result
    # The seeded tenants: three bots with two channels each, the last channel inactive.
    tenants: list[tuple[ObjectId, ObjectId]] = []
    for b in range(3):
        bot_id, _secret = stack.create_bot(f"seed bot {b}")
        for c in range(2):
            channel_id = stack.create_channel(bot_id=bot_id, name=f"seed bot {b} channel {c}", path="/hook/seed")
            tenants.append((ObjectId(bot_id), ObjectId(channel_id)))
    stack.set_channel_active(str(tenants[-1][1]), False)
    traffic_bot, secret = stack.create_bot("bench data-scale traffic")
    traffic_channels = [stack.create_channel(bot_id=traffic_bot, name=f"data-scale traffic {i}",
                                             path=TRAFFIC_PATH) for i in range(4)]  # fmt: skip
    session = admin_session(stack)
    api = requests.Session()
    list_pages = discover(stack, session, prefer={str(i) for tenant in tenants[:2] for i in tenant})
    admin_lists = [p["path"] for p in list_pages if "variant" not in p]
    say(f"    {len(list_pages)} admin list pages found ({len(admin_lists)} lists)")
    result.update(rate=rate, samples=samples, page_min_s=page_min_s, page_samples_max=PAGE_SAMPLES_MAX,
                  dialogues=dialogues, sizes=[], pages_found=len(list_pages))  # fmt: skip
    acked = 0
    for size in sizes:
        seeded = seed(db, tenants=tenants, dialogues=dialogues, messages=size)
        say(f"    seeded {seeded.dialogues_added} dialogues and {seeded.messages_added} messages in "
            f"{seeded.seconds} s ({seeded.dialogues} dialogues, {seeded.messages} messages)")  # fmt: skip
        pages = list_pages + detail_pages(db, admin_lists=admin_lists, seeded_bot=tenants[0][0])
        # The previous size's traffic answered and the app ready again, so that this size's
        # baseline is not the previous reads' aftermath.
        settle_s = settle(stack, expected=acked)
        if hold and size == sizes[-1]:
            _hold(stack, secret=secret, channel_ids=traffic_channels, rate=rate, say=say)
            return result
        # The traffic's first seconds after seeding are not its baseline: the first messages
        # of each traffic dialogue after the seed ran at 30-70 ms for about 7 s (250,000
        # messages, 2026-12-08), and the baseline's p99 was then twice what it is later.
        with Traffic(stack, secret=secret, channel_ids=traffic_channels, rate=rate) as warm:
            time.sleep(WARM_UP_S)
        acked += len(warm.sent.acks) if warm.sent else 0
        cpu_before, alone_started = stack.cpu_seconds(), time.monotonic()
        with Traffic(stack, secret=secret, channel_ids=traffic_channels, rate=rate) as alone:
            time.sleep(baseline_s)
        traffic_cpu = _cpu_rate(cpu_before, stack.cpu_seconds(), time.monotonic() - alone_started)
        baseline = _webhook(alone.sent)
        acked += len(alone.sent.acks) if alone.sent else 0
        say(f"    webhook alone at {rate:g}/s: p50 {baseline['latency_ms']['p50']} ms, p99 "
            f"{baseline['latency_ms']['p99']} ms, 503s {baseline['status_503']}")  # fmt: skip
        timed = []
        reads_started = time.monotonic()
        with Traffic(stack, secret=secret, channel_ids=traffic_channels, rate=rate) as during:
            for page in pages:
                cpu_before, page_started = stack.cpu_seconds(), time.monotonic()
                page_timed = time_page(stack, page, api if page["kind"] == "api" else session, samples, page_min_s)
                page_timed["cpu_ms"] = _page_cpu_ms(
                    cpu_before,
                    stack.cpu_seconds(),
                    time.monotonic() - page_started,
                    traffic_cpu,
                    page_timed["samples"],
                )
                timed.append(page_timed)
        reads = _webhook(during.sent)
        acked += len(during.sent.acks) if during.sent else 0
        failing = sum(1 for t in timed if not t.get("ok"))
        say(f"    {len(timed)} pages in {time.monotonic() - reads_started:.0f} s, {failing} not all 200; webhook "
            f"during reads: p50 {reads['latency_ms']['p50']} ms, p99 {reads['latency_ms']['p99']} ms, 503s "
            f"{reads['status_503']}")  # fmt: skip
        result["sizes"].append({"messages": seeded.messages, "dialogues": seeded.dialogues,
                                "seed_s": seeded.seconds, "seeded_messages": seeded.messages_added,
                                "settle_s": settle_s, "warm_up_s": WARM_UP_S,
                                "webhook_alone": baseline, "webhook_during_reads": reads, "pages": timed})  # fmt: skip
    result["duration_s"] = round(time.monotonic() - started, 1)
    return result


# --- targets and the report ----------------------------------------------------------------------


def ratios(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each page's p95 at the largest size over its p95 at the first."""
    sizes = result.get("sizes") or []
    if len(sizes) < 2:
        return []
    first = {p["name"]: p for p in sizes[0]["pages"]}
    rows = []
    for page in sizes[-1]["pages"]:
        before = first.get(page["name"])
        if before and before.get("p95") and page.get("p95"):
            rows.append({"name": page["name"], "before": before["p95"], "after": page["p95"],
                         "ratio": round(page["p95"] / before["p95"], 2)})  # fmt: skip
    return rows


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for size in result.get("sizes") or []:
        n = size["messages"]
        if not size["pages"]:
            continue
        pages = size["pages"]
        slow = [p for p in pages if p.get("p95") is None or p["p95"] > PAGE_P95_TARGET_MS]
        failed = [p for p in pages if not p.get("ok")]
        worst = max((p for p in pages if p.get("p95") is not None), key=lambda p: p["p95"], default=None)
        checks.append({"target": f"data at {n} messages: every page p95 <= {PAGE_P95_TARGET_MS:g} ms",
                       "value": f"{len(slow)} of {len(pages)} over" + (f"; worst {worst['p95']} ms ({worst['name']})"
                                                                        if worst else ""),
                       "met": not slow, "kind": "performance"})  # fmt: skip
        checks.append({"target": f"data at {n} messages: every page answers 200",
                       "value": f"{len(failed)} of {len(pages)} pages answered something else"
                       + (f" (e.g. {failed[0]['name']}: {failed[0]['statuses']})" if failed else ""),
                       "met": not failed, "kind": "performance"})  # fmt: skip
        alone, during = size["webhook_alone"]["latency_ms"]["p99"], size["webhook_during_reads"]["latency_ms"]["p99"]
        checks.append({"target": f"data at {n} messages: webhook p99 during reads <= {WEBHOOK_P99_RATIO_TARGET:g}x "
                                 "its p99 without", "value": f"{during} ms vs {alone} ms (x{during / alone:.2f})",
                       "met": during <= WEBHOOK_P99_RATIO_TARGET * alone, "kind": "performance"})  # fmt: skip
        n503 = size["webhook_alone"]["status_503"] + size["webhook_during_reads"]["status_503"]
        checks.append({"target": f"data at {n} messages: 0 webhook 503s", "value": f"{n503}",
                       "met": n503 == 0, "kind": "performance"})  # fmt: skip
    rows = ratios(result)
    if rows:
        over = [r for r in rows if r["ratio"] > GROWTH_RATIO_TARGET]
        sizes = result["sizes"]
        checks.append({"target": f"data at scale: each page's p95 at {sizes[-1]['messages']} within "
                                 f"{GROWTH_RATIO_TARGET:g}x its p95 at {sizes[0]['messages']}",
                       "value": f"{len(over)} of {len(rows)} pages over; worst x{max(r['ratio'] for r in rows)}",
                       "met": not over, "kind": "performance"})  # fmt: skip
    return checks


def render(result: dict[str, Any], table: Callable[[list[str], list[list[Any]]], str]) -> str:
    if not result.get("sizes"):
        return "\nDATA AT SCALE: nothing measured"
    out = [f"\nDATA AT SCALE (pages timed one request at a time, {result['samples']} each and more for "
           f"{result.get('page_min_s', 0):g} s (up to {result.get('page_samples_max', result['samples'])}), "
           f"fewer when the first is over {SLOW_MS:g} ms or not a 200; webhook at {result['rate']:g} msg/s "
           "throughout; ms)"]  # fmt: skip
    for size in result["sizes"]:
        out.append(f"\n{size['messages']} messages in {size['dialogues']} dialogues (seeded {size['seeded_messages']} "
                   f"in {size['seed_s']} s; settled in {size.get('settle_s', '-')} s and warmed up "
                   f"for {size.get('warm_up_s', 0):g} s before the baseline)")  # fmt: skip
        out.append(table(
            ["page", "n", "p50", "p95", "db CPU/req", "app CPU/req", "status codes", ""],
            [[p["name"], p["samples"], p.get("p50", "-"), p.get("p95", "-"),
              p.get("cpu_ms", {}).get("database", "-"), p.get("cpu_ms", {}).get("app", "-"),
              " ".join(f"{k}x{v}" for k, v in p["statuses"].items()),
              "PASS" if p.get("ok") and (p.get("p95") or 1e9) <= PAGE_P95_TARGET_MS else "FAIL"]
             for p in size["pages"]],
        ))  # fmt: skip
        out.append(table(
            ["webhook", "messages", "p50", "p99", "max", "503s", "non-2xx"],
            [[name, w["messages"], w["latency_ms"]["p50"], w["latency_ms"]["p99"], w["latency_ms"]["max"],
              w["status_503"], w["non_2xx"]]
             for name, w in (("without reads", size["webhook_alone"]), ("during reads", size["webhook_during_reads"]))],
        ))  # fmt: skip
    rows = ratios(result)
    if rows:
        sizes = result["sizes"]
        out.append(f"\np95 at {sizes[-1]['messages']} over p95 at {sizes[0]['messages']} messages")
        out.append(table(
            ["page", f"p95 {sizes[0]['messages']}", f"p95 {sizes[-1]['messages']}", "ratio", ""],
            [[r["name"], r["before"], r["after"], r["ratio"], "PASS" if r["ratio"] <= GROWTH_RATIO_TARGET else "FAIL"]
             for r in rows],
        ))  # fmt: skip
    out.append(f"\ndata at scale: {result.get('duration_s')} s in all")
    return "\n".join(out)
