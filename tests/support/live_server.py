"""The app served by real gunicorn, exactly as `make run` serves it, and the worker beside
it as `make run` starts it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from devtools.embedded_mongo import free_port
from devtools.run import METRICS_DIR_ENV, WAKE_DIR_ENV, gunicorn_command, worker_command

ROOT = Path(__file__).resolve().parents[2]


class LiveServer:
    def __init__(
        self,
        *,
        db_name: str,
        env: dict[str, str] | None = None,
        workers: int = 1,
        threads: int = 8,
        worker: bool = False,
    ):
        self.port = free_port()
        self.db_name = db_name
        self.extra_env = env or {}
        self.workers = workers
        self.threads = threads
        self.with_worker = worker
        self.process: subprocess.Popen[bytes] | None = None
        self.worker: WorkerProcess | None = None
        self.log_path = ROOT / "test-artifacts" / f"gunicorn-{self.port}.log"
        # Shared by gunicorn's workers and every worker started with env(), as `make run`
        # shares one: /metrics adds up all of their files.
        self.metrics_dir = tempfile.mkdtemp(prefix=f"metrics-{self.port}-")
        # One host, as under `make run`: the webhook wakes the workers started with env().
        self.wake_dir = tempfile.mkdtemp(prefix=f"wake-{self.port}-")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings_test",
                "MONGO_DB_NAME": self.db_name,
                "CHANNEL_ALLOW_PRIVATE_URLS": "true",
                # As in production: the webhook and the worker batch their counts, no write per message.
                "COUNTERS_FLUSH_S": "2",
                METRICS_DIR_ENV: self.metrics_dir,
                WAKE_DIR_ENV: self.wake_dir,
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> LiveServer:
        self.log_path.parent.mkdir(exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115
        cmd = gunicorn_command(bind=f"127.0.0.1:{self.port}", workers=str(self.workers), threads=str(self.threads))
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        if self.with_worker:
            self.worker = WorkerProcess(env=self.env(), name=str(self.port)).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer within {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        if self.worker:
            self.worker.stop()
        terminate(self.process)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        shutil.rmtree(self.wake_dir, ignore_errors=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WorkerProcess:
    """`manage.py run_worker`, as `make run` starts it."""

    def __init__(self, *, env: dict[str, str], name: str = ""):
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = ROOT / "test-artifacts" / f"worker-{name or free_port()}.log"
        self.starts = 0

    def start(self) -> WorkerProcess:
        self.log_path.parent.mkdir(exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(worker_command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: the worker dies between any two lines, as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        terminate(self.process)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def terminate(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
