"""Open inboxes (issue 26): what 50 operators' inbox tabs, each asking for the list every 2 s as
the page does, cost the database, against no tab and one tab. The database's own counters
(serverStatus opcounters) are read over each window, so the worker's and the app's other reads
are in all three alike; the inbox's cost is the difference. The answer's latency as the tabs
see it is reported too."""

from __future__ import annotations

import re
import statistics
import threading
import time
from typing import Any

import requests

from bench.dbstats import DbCounters
from bench.stack import DB_NAME, USERNAME, Stack

POLL_S = 2.0


def _logged_in(stack: Stack) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{stack.app_url}/admin/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token is not None, "no CSRF token on the login page"
    response = session.post(
        f"{stack.app_url}/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token.group(1), "username": USERNAME, "password": stack.password},
        headers={"Referer": f"{stack.app_url}/admin/login/"},
        timeout=30,
    )
    assert "sessionid" in session.cookies, f"login failed: {response.status_code}"
    return session


def _window(stack: Stack, counters: DbCounters, *, tabs: int, seconds: float) -> dict[str, Any]:
    sessions = [_logged_in(stack) for _ in range(tabs)]
    stop = threading.Event()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def tab(session: requests.Session, offset: float) -> None:
        time.sleep(offset)
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = session.get(f"{stack.app_url}/admin/inbox/data", timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                if ok:
                    latencies.append((time.monotonic() - started) * 1000)
                else:
                    errors[0] += 1
            stop.wait(max(0.0, started + POLL_S - time.monotonic()))

    threads = [threading.Thread(target=tab, args=(s, POLL_S * i / max(1, tabs)), daemon=True) for i, s in
               enumerate(sessions)]  # fmt: skip
    for thread in threads:
        thread.start()
    time.sleep(POLL_S)  # every tab polling
    before = counters.snapshot()
    time.sleep(seconds)
    after = counters.snapshot()
    stop.set()
    for thread in threads:
        thread.join(timeout=35)
    queries = after.opcounters.get("query", 0) - before.opcounters.get("query", 0)
    ordered = sorted(latencies)
    return {
        "tabs": tabs,
        "seconds": seconds,
        "requests": len(latencies),
        "errors": errors[0],
        "db_queries_per_s": round(queries / seconds, 2),
        "answer_ms": {
            "p50": round(statistics.median(ordered), 1) if ordered else None,
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1) if ordered else None,
        },
    }


def run_inbox(stack: Stack, *, conversations: int = 30, seconds: float = 30.0, say: Any = print) -> dict[str, Any]:
    """Seeds `conversations` that need a human (the customer asks for one), then measures no tab,
    one tab and 50 tabs for `seconds` each."""
    bot_id, secret = stack.create_bot("Inbox bench bot", handoff_keywords="human")
    channel_id = stack.create_channel(bot_id=bot_id, name="Inbox bench", path="/inbox")
    for number in range(conversations):
        response = requests.post(
            f"{stack.app_url}/api/webhook/new_message",
            headers={"x-chatbot_auth_token": f"Bearer {secret}"},
            json={"chat_id": f"inbox-{number}", "channel_id": channel_id, "text": "A human, please",
                  "message_sender": "customer", "message_id": f"inbox-{number}"},
            timeout=30,
        )  # fmt: skip
        response.raise_for_status()
    time.sleep(3)  # the worker hands them off
    counters = DbCounters(stack.mongo.url, DB_NAME)
    try:
        windows = []
        for tabs in (0, 1, 50):
            say(f"    {tabs} open inbox(es) for {seconds:g} s")
            windows.append(_window(stack, counters, tabs=tabs, seconds=seconds))
    finally:
        counters.close()
    baseline = windows[0]["db_queries_per_s"]
    for window in windows:
        window["inbox_db_queries_per_s"] = round(window["db_queries_per_s"] - baseline, 2)
    return {"conversations": conversations, "poll_s": POLL_S, "windows": windows}
