"""Start and stop the embedded MongoDB-compatible server (secantusd) as a child process.

secantusdb is GPL-2.0, so it is only ever run as a separate program, never imported.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from core.env import env_set


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def ping(url: str, timeout_ms: int = 500) -> bool:
    client: MongoClient = MongoClient(url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


# Client options for an embedded server this project starts (never for a MONGO_URL someone
# gives us, nor for a real MongoDB found on the default port), measured on secantusd 0.7.0b3
# (docs/internals.md, "Known quirks of the embedded server"):
# - retryWrites=false: secantusd keeps a record of every retryable write for 30 minutes (up to
#   10,000) and walks all of them twice on each write, sorting them once past the cap, so every
#   write costs more as traffic goes on (a quarter of its CPU after 2,000 webhook messages).
#   One server with no failover gains nothing from retryable writes; the app's own rules rest
#   on unique indexes, not on retries.
CLIENT_OPTIONS = "directConnection=true&retryWrites=false"
# - maxPoolSize=1, for app servers (make run, make bench): secantusd serves each connection
#   from its own thread under one GIL, and two operations at once cost it 1.5x the CPU each
#   (interleaved WiredTiger transactions conflict and retry). One connection per app process
#   keeps it at its serial cost: 70 instead of 49 webhook messages/s. The test suite keeps
#   pymongo's pool so that its race tests run operations truly at once.
APP_CLIENT_OPTIONS = CLIENT_OPTIONS + "&maxPoolSize=1"


def url_for(port: int, *, host: str = "127.0.0.1", app: bool = False) -> str:
    return f"mongodb://{host}:{port}/?{APP_CLIENT_OPTIONS if app else CLIENT_OPTIONS}"


def die_with_parent() -> None:
    """For `preexec_fn`: Linux sends the child SIGTERM when the process that started it dies,
    so a server never outlives its launcher (make run, the test runner, the benchmark)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _executable() -> str:
    # The venv's bin folder first: `make` runs us as .venv/bin/python without activating.
    candidate = Path(sys.executable).with_name("secantusd-py")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("secantusd-py")
    if not found:
        raise SystemExit("error: secantusd-py not found; run `make run` or install requirements-dev.txt")
    return found


# How this project runs the embedded server (only it; a MONGO_URL is never touched), measured on
# secantusd 0.7.0b3 (docs/internals.md, "Known quirks of the embedded server"):
# - `--standalone`: it then keeps no oplog, which nothing here reads (no change streams, no
#   replica set), and saves a BSON encode and an oplog write per document written: 8 % more
#   replies per second end to end (`make bench`, load C=16).
SERVER_OPTIONS = ("--standalone",)
# - Its Python thread switch interval at 0.5 ms instead of 5 ms: it serves each connection on
#   a thread of its own under one GIL, so a webhook's short operation waited up to 5 ms for
#   each turn behind an operator's long read. The webhook's p99 during admin reads fell by
#   about a third. Still a program of its own (GPL-2.0): this only starts its command line's
#   `main` in a fresh interpreter after setting the interval.
SWITCH_INTERVAL_S = 0.0005
LAUNCH = (
    "import sys; sys.setswitchinterval({interval}); sys.argv[0] = 'secantusd-py'; "
    "from secantus.cli import main; sys.exit(main())"
)


def _launcher() -> list[str]:
    """The command that starts the server, before its options."""
    script = _executable()
    if Path(script).parent == Path(sys.executable).parent:
        # Installed beside this interpreter (the project's venv): the interval can be set.
        return [sys.executable, "-c", LAUNCH.format(interval=SWITCH_INTERVAL_S)]
    return [script]


# - Held to one core of this machine (chosen by its port, so that several servers spread): its
#   threads otherwise run on every core, and each hand-over of its one GIL from a thread on one
#   core to a thread on another cost it as much as the work itself. Two connections at once
#   took 0.92 ms of its CPU per update unpinned and 0.43 ms pinned (0.46 ms for one alone).
def _one_core(port: int) -> Callable[[], None]:
    """For `preexec_fn`: the server's process (and every thread it starts) on one core."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

    def pin() -> None:
        die_with_parent()
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[port % len(cores)]})

    return pin


class EmbeddedMongo:
    """One secantusd process. `storage` is a folder, or ':memory:' for a throwaway one."""

    def __init__(
        self,
        *,
        port: int | None = None,
        storage: str = ":memory:",
        log_file: Path | None = None,
        host: str = "127.0.0.1",
        cache_size: str | None = None,
    ):
        self.host = host
        # The server's WiredTiger cache (its default, 1G, unless given): in memory (":memory:"),
        # everything it holds must fit in it.
        self.cache_size = cache_size
        self.port = port or free_port()
        self.storage = storage
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return url_for(self.port, host=self.host)

    @property
    def app_url(self) -> str:
        """The URL app servers (gunicorn) use: one connection per process."""
        return url_for(self.port, host=self.host, app=True)

    def start(self, timeout: float = 30.0) -> EmbeddedMongo:
        if self.storage != ":memory:":
            Path(self.storage).mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        cmd = [*_launcher(), "--host", self.host, "--port", str(self.port), "--storage-path", self.storage]
        cmd += ["--log-level", "WARNING", *SERVER_OPTIONS]
        if self.cache_size:
            cmd += ["--cache-size", self.cache_size]
        # A new session so that Ctrl-C in the terminal reaches only the launcher, which
        # then stops this server in order (after the app that uses it).
        self.process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_one_core(self.port)
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"error: secantusd exited with status {self.process.returncode} (see {self.log_file})")
            if ping(self.url, timeout_ms=300):
                return self
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"error: secantusd did not answer ping on port {self.port} within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedMongo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def env_with_url(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env_set(env, "MONGO_URL", url)
    return env


@dataclass(frozen=True)
class RunningServer:
    pid: int
    host: str
    port: int


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def server_serving(storage: Path) -> RunningServer | None:
    """The secantusd process of this machine whose data folder is `storage`, found by its
    command line (Linux's /proc), whoever started it: a server is known by its data, never by
    a port that anything else could be listening on."""
    wanted = storage.resolve()
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [arg.decode(errors="replace") for arg in (entry / "cmdline").read_bytes().split(b"\0") if arg]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        # `secantusd-py` is a Python script: its name is the first or the second argument, or
        # it was started by `_launcher`'s `-c`.
        started_here = len(args) > 2 and args[1] == "-c" and "secantus.cli" in args[2]
        if not started_here and not any(Path(arg).name.startswith("secantusd") for arg in args[:2]):
            continue
        path, port, host = _option(args, "--storage-path"), _option(args, "--port"), _option(args, "--host")
        if not path or path == ":memory:" or not port or not port.isdigit():
            continue
        try:
            folder = Path(path) if Path(path).is_absolute() else Path(os.readlink(entry / "cwd")) / path
        except OSError:
            continue
        if folder.resolve() == wanted:
            host = host or "127.0.0.1"
            return RunningServer(pid=int(entry.name), host="127.0.0.1" if host == "0.0.0.0" else host, port=int(port))  # noqa: S104
    return None


# `make run` writes the URL of its embedded server here (in its data folder), and the settings
# read it when MONGO_URL is unset, so `manage.py` in a second terminal reaches the same database.
URL_RECORD = "mongo-url"


def recorded_url(data: Path) -> str | None:
    try:
        return (data / URL_RECORD).read_text().strip() or None
    except OSError:
        return None


def record_url(data: Path, url: str) -> None:
    data.mkdir(parents=True, exist_ok=True)
    temporary = data / f".{URL_RECORD}.{os.getpid()}"
    temporary.write_text(url + "\n")
    temporary.replace(data / URL_RECORD)
