"""Everything one benchmark run needs, started fresh and stopped in order: the embedded
database (in memory, new per run), migrations, a staff user with an API token, the app
under gunicorn and the worker beside it, both exactly as `make run` starts them (the same
commands from devtools.run, the same environment, the embedded server's URL with the
make-run client options), and the counting channel receiver."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet

from devtools.embedded_mongo import EmbeddedMongo, die_with_parent, free_port
from devtools.run import METRICS_DIR_ENV, WAKE_DIR_ENV, gunicorn_command, metrics_dir_fresh, worker_command

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "bench"
USERNAME = "bench"


def _wait_http(url: str, *, timeout: float, process: subprocess.Popen[bytes] | None = None, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"error: {what} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"error: {what} did not answer {url} within {timeout:.0f} s")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores, all processes), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest time is already counted in user time.
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime, fields 14 and 15 of proc(5), counted after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stack:
    def __init__(
        self, *, out_dir: Path, workers: str, threads: str, log_level: str = "warning", cache_size: str | None = None
    ):
        self.out_dir = out_dir
        self.workers = workers
        self.threads = threads
        self.log_level = log_level
        self.mongo = EmbeddedMongo(storage=":memory:", log_file=out_dir / "secantusd.log", cache_size=cache_size)
        self.app_port = free_port()
        self.receiver_port = free_port()
        self.gunicorn: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_env: dict[str, str] = {}
        # Other processes to account for while they run (the floor's worker, the simple floor's
        # gunicorn), by name.
        self.extra_processes: dict[str, list[int]] = {}
        self.receiver: subprocess.Popen[bytes] | None = None
        self.api_token = ""
        # The superuser's password, for the admin's pages (bench.datascale signs in with it).
        self.password = ""
        self.env: dict[str, str] = {}

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    def _manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"error: manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> Stack:
        self.mongo.start()
        self.env = dict(os.environ)
        self.env.update(
            {
                # url_for(port, app=True): the client options `make run` gives the app.
                "MONGO_URL": self.mongo.app_url,
                "MONGO_DB_NAME": DB_NAME,
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
                # Kept in this process's environment too: the floor's worker (bench.floor), started
                # from here, decrypts the channels' tokens with it.
                "SECRETS_ENCRYPTION_KEYS": os.environ.setdefault(
                    "SECRETS_ENCRYPTION_KEYS", Fernet.generate_key().decode()
                ),
                # The receiver listens on 127.0.0.1, which delivery refuses by default.
                "CHANNEL_ALLOW_PRIVATE_URLS": "true",
                # Every simulated web chat visitor comes from this one address (bench.widgets).
                "WEBCHAT_SESSION_RATE": "0",
                "WEBCHAT_ADDRESS_MESSAGE_RATE": "0",
                # Data at scale reads each API page up to 100 times in 4 s with one token
                # (bench.datascale): counted as always, never refused.
                "API_RATE": "1000000/minute",
                "LOG_LEVEL": os.environ.get("LOG_LEVEL", self.log_level),
                # One directory for every process of the run, as `make run` gives them.
                METRICS_DIR_ENV: metrics_dir_fresh(self.out_dir / "metrics"),
                # One host, as under `make run`: the webhook wakes the idle worker.
                WAKE_DIR_ENV: str(self.out_dir / "wake"),
            }
        )
        self.env.pop("DJANGO_DEBUG", None)
        self._manage("migrate", "--no-input", "-v", "0")
        password = self.password = secrets.token_urlsafe(16)
        self._manage(
            "createsuperuser",
            "--noinput",
            env={
                **self.env,
                "DJANGO_SUPERUSER_USERNAME": USERNAME,
                "DJANGO_SUPERUSER_EMAIL": "bench@example.com",
                "DJANGO_SUPERUSER_PASSWORD": password,
            },
        )
        out = self._manage("drf_create_token", USERNAME)
        match = re.search(r"Generated token (\S+) for user", out)
        if not match:
            raise SystemExit(f"error: could not read the API token from: {out!r}")
        self.api_token = match.group(1)

        receiver_log = open(self.out_dir / "receiver.log", "wb")  # noqa: SIM115
        self.receiver = subprocess.Popen(
            [sys.executable, "-m", "devtools.receiver", "--port", str(self.receiver_port)],
            cwd=ROOT,
            stdout=receiver_log,
            stderr=subprocess.STDOUT,
        )
        self.start_gunicorn()
        _wait_http(self.receiver_url + "/stats", timeout=15, process=self.receiver, what="the receiver")
        self.start_worker()
        return self

    def start_gunicorn(self, extra_env: dict[str, str] | None = None) -> None:
        app_log = open(self.out_dir / "gunicorn.log", "ab")  # noqa: SIM115
        cmd = gunicorn_command(bind=f"127.0.0.1:{self.app_port}", workers=self.workers, threads=self.threads)
        self.gunicorn = subprocess.Popen(
            cmd, cwd=ROOT, env={**self.env, **(extra_env or {})}, stdout=app_log, stderr=subprocess.STDOUT
        )
        _wait_http(self.app_url + "/readyz", timeout=30, process=self.gunicorn, what="gunicorn")

    def restart_app(self, *, gunicorn_mongo_url: str, worker_mongo_url: str) -> None:
        """gunicorn and the worker again, reaching the database at other URLs (the diagnostic
        phase's counting proxy)."""
        self.stop_worker()
        if self.gunicorn and self.gunicorn.poll() is None:
            self.gunicorn.send_signal(signal.SIGTERM)
            self.gunicorn.wait(20)
        self.start_gunicorn({"MONGO_URL": gunicorn_mongo_url})
        self.start_worker({"MONGO_URL": worker_mongo_url})

    def start_worker(self, extra_env: dict[str, str] | None = None) -> None:
        """The worker as `make run` starts it (devtools.run.worker_command, the app's
        environment), with `extra_env` on top for a scenario (e.g. a slow LLM)."""
        self.worker_env = dict(extra_env or {})
        started_before = self._worker_started_lines()
        log = open(self.out_dir / "worker.log", "ab")  # noqa: SIM115
        log.write(f"--- worker started, extra env {self.worker_env}\n".encode())
        log.flush()
        self.worker = subprocess.Popen(
            worker_command(),
            cwd=ROOT,
            env={**self.env, **self.worker_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        # It prints one line once Django is set up and it is about to claim work.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise SystemExit(f"error: the worker exited with status {self.worker.returncode} (see worker.log)")
            if self._worker_started_lines() > started_before:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("error: the worker did not start within 30 s (see worker.log)")

    def _worker_started_lines(self) -> int:
        try:
            text = (self.out_dir / "worker.log").read_text(errors="replace")
        except OSError:
            return 0
        return len(re.findall(r"threads, looking for work every", text))

    def worker_threads(self) -> int | None:
        """WORKER_THREADS as the worker reports it when it starts."""
        try:
            text = (self.out_dir / "worker.log").read_text(errors="replace")
        except OSError:
            return None
        found = re.findall(r": (\d+) threads, looking for work every ([\d.]+) ms", text)
        return int(found[-1][0]) if found else None

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGCONT)  # in case it is paused
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()

    def restart_worker(self, extra_env: dict[str, str] | None = None) -> None:
        self.stop_worker()
        self.start_worker(extra_env)

    def pause_worker(self) -> None:
        """Stops the app's worker where it is (SIGSTOP), so that its idle look-ups do not
        land in the floor's measurements. Only called when it holds no work."""
        if self.worker and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGSTOP)

    def resume_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.stop_worker()
        for process in (self.gunicorn, self.receiver):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.mongo.stop()

    # --- the public API ------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(
            method,
            self.app_url + path,
            headers={"Authorization": f"Token {self.api_token}"},
            timeout=30,
            **kwargs,
        )
        if response.status_code >= 300:
            raise SystemExit(f"error: {method} {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def create_bot(self, name: str, *, llm_provider_id: str | None = None, **settings: Any) -> tuple[str, str]:
        """Returns (bot id, secret). `llm_provider_id`: the provider whose server answers it
        (None: the platform's default, LLM_BACKEND); `settings`: more of the API's bot fields."""
        body: dict[str, Any] = {"name": name, **settings}
        if llm_provider_id is not None:
            body["llm_provider_id"] = llm_provider_id
        bot = self.api("POST", "/api/chatbots/", json=body)
        return str(bot["id"]), bot["secret_token"]

    def create_provider(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str = "bench-key",
        max_concurrent: int | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
    ) -> str:
        """An LLM provider through the API (which stores its key encrypted, as the admin does)."""
        provider = self.api(
            "POST",
            "/api/llm_providers/",
            json={"name": name, "base_url": base_url, "api_key": api_key, "max_concurrent": max_concurrent,
                  "requests_per_minute": requests_per_minute, "tokens_per_minute": tokens_per_minute},
        )  # fmt: skip
        return str(provider["id"])

    def create_channel(self, *, bot_id: str, name: str, path: str = "/hook") -> str:
        channel = self.api(
            "POST",
            "/api/channels/",
            json={"name": name, "chat_bot_id": bot_id, "url": self.receiver_url + path, "is_active": True},
        )
        return str(channel["id"])

    def receiver_stats(self, path: str | None = None) -> dict[str, int]:
        params = {"path": path} if path else None
        return requests.get(self.receiver_url + "/stats", params=params, timeout=10).json()

    def receiver_receipts(self, path: str) -> dict[str, tuple[float, int]]:
        """in_reply_to -> (when its first reply arrived, CLOCK_MONOTONIC; how many arrived)."""
        data = requests.get(self.receiver_url + "/receipts", params={"path": path}, timeout=30).json()
        return {key: (float(t), int(n)) for key, (t, n) in data.items()}

    def set_channel_active(self, channel_id: str, active: bool) -> None:
        self.api("PATCH", f"/api/channels/{channel_id}/", json={"is_active": active})

    def receiver_reset(self) -> None:
        requests.post(self.receiver_url + "/reset", timeout=10)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each process of the stack and by this one:
        the difference over a run says where the machine's time went."""
        groups = {
            "database": [self.mongo.process.pid] if self.mongo.process else [],
            "app (gunicorn)": self.gunicorn_pids() if self.gunicorn else [],
            "worker": [self.worker.pid] if self.worker else [],
            "receiver": [self.receiver.pid] if self.receiver else [],
            "load generator": [os.getpid()],
            **self.extra_processes,
        }
        return {name: round(sum(_cpu_of(pid) for pid in pids), 3) for name, pids in groups.items()}

    def gunicorn_pids(self) -> list[int]:
        """The master and its workers (for the profiler)."""
        assert self.gunicorn is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.gunicorn.pid)], capture_output=True, text=True)
        return [self.gunicorn.pid, *(int(p) for p in out.stdout.split())]
