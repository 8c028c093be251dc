"""gunicorn's settings, for every way the app is served: `make run`, the end-to-end tests,
`make bench`, `make scale` and the systemd unit in this folder (`gunicorn -c
deploy/gunicorn.conf.py config.wsgi:application`). One file, so the development server and
production cannot drift apart.

Everything that differs between machines comes from the environment (the same variables
as the rest of the app, see `.env.example`):

- SERVER_BIND (default `0.0.0.0:$PORT`, PORT 8000): where to listen.
- SERVER_WORKERS (1) processes, SERVER_THREADS (8) threads each.
- SERVER_TIMEOUT (60 s): a worker silent that long is restarted.
- SERVER_ACCESS_LOG (off): `1` writes gunicorn's access log to stdout.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# The old names (SERVER__WORKERS, ...) still work: core.env reads them as the new ones. It
# needs nothing of Django's set up, only the project on the path (gunicorn adds it for the
# app, not yet for this file).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.env import env_normalize  # noqa: E402

try:
    env_normalize(os.environ)
except Exception as exc:  # ImproperlyConfigured: the old and the new name disagree
    raise SystemExit(f"configuration error: {exc}") from None


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, got {value}")
    return value


bind = [os.environ.get("SERVER_BIND") or f"0.0.0.0:{_positive_int('PORT', 8000)}"]
workers = _positive_int("SERVER_WORKERS", 1)
# Threads let one worker overlap database round trips; the webhook never waits on an LLM or
# a channel (the worker process does that), so a handful per process is enough.
worker_class = "gthread"
threads = _positive_int("SERVER_THREADS", 8)
timeout = _positive_int("SERVER_TIMEOUT", 60)
# How often a worker's threads hand each other Python's one lock (the GIL), in microseconds:
# Python's default is 5,000. A webhook request arriving while another thread renders an admin
# page otherwise waits up to 5 ms at each of its turns; measured with admin pages read back to
# back, the webhook's p99 fell from 32-34 ms to 22-30 ms at 500 (docs/benchmarks.md).
_switch_interval_us = _positive_int("SERVER_SWITCH_INTERVAL_US", 500)
graceful_timeout = 10
# Keep request headers whose names contain underscores: the existing channels authenticate
# with `x-chatbot_auth_token`, which gunicorn drops by default (nginx too: see nginx.conf).
header_map = "dangerous"
# gunicorn's control socket defaults to one path per user; several servers on one machine
# (tests, benchmarks, the hosts of `make scale`) would fight over it, and nothing uses it.
control_socket_disable = True
accesslog = "-" if os.environ.get("SERVER_ACCESS_LOG", "").lower() in ("1", "true") else None
# gunicorn's default line, with the path without its query string (`%(U)s`, not the request
# line `%(r)s`) and no referer: a URL's query can carry a one-time key or a token.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(a)s"'
# Request lines up to gunicorn's maximum: a URL the app finds too long is then answered by the
# app, as JSON (core.middleware.UrlLengthLimitMiddleware, 4096 bytes), rather than by
# gunicorn's HTML 414 at its default 4094-byte line.
limit_request_line = 8190
# Behind nginx (deploy/nginx.conf), which sets X-Forwarded-For / X-Forwarded-Proto.
forwarded_allow_ips = os.environ.get("SERVER_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


# --- prometheus-client's multiprocess mode (core/metrics.py) ---------------------------------
# These hooks run in gunicorn's master process, which never loads Django: nothing here imports
# the app, and prometheus-client is imported only inside the hooks, after the directory is
# settled (it picks its mode from the environment when first imported, and the workers inherit
# the master's modules when they are forked).
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_made_here: list[str] = []


def on_starting(server: Any) -> None:
    # `make run`, the tests and the benchmark pass a directory that the worker process shares
    # (systemd: set PROMETHEUS_MULTIPROC_DIR in both units to the same folder). gunicorn
    # started without one gets its own, so that its workers still add up.
    if not os.environ.get(METRICS_DIR_ENV):
        directory = tempfile.mkdtemp(prefix="chatbots-metrics-")
        os.environ[METRICS_DIR_ENV] = directory
        _made_here.append(directory)
        server.log.info("metrics: %s=%s (made for this gunicorn)", METRICS_DIR_ENV, directory)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges must no longer count (its counters still do)."""
    if os.environ.get(METRICS_DIR_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    for directory in _made_here:
        shutil.rmtree(directory, ignore_errors=True)


def post_fork(server: Any, worker: Any) -> None:
    sys.setswitchinterval(_switch_interval_us / 1_000_000)
