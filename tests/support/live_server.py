"""The app served by real gunicorn, exactly as `make run` serves it."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

from devtools.embedded_mongo import free_port
from devtools.run import gunicorn_command

ROOT = Path(__file__).resolve().parents[2]


class LiveServer:
    def __init__(self, *, db_name: str, env: dict[str, str] | None = None, workers: int = 1, threads: int = 8):
        self.port = free_port()
        self.db_name = db_name
        self.extra_env = env or {}
        self.workers = workers
        self.threads = threads
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = ROOT / "test-artifacts" / f"gunicorn-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LiveServer:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings_test",
                "MONGO__DB_NAME": self.db_name,
                "CHANNEL_ALLOW_PRIVATE_URLS": "true",
            }
        )
        env.update(self.extra_env)
        self.log_path.parent.mkdir(exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115
        cmd = gunicorn_command(bind=f"127.0.0.1:{self.port}", workers=str(self.workers), threads=str(self.threads))
        self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
