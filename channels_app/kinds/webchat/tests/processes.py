"""The stream process as `make run` starts it, for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[4]


class StreamProcess:
    def __init__(self) -> None:
        env = dict(os.environ)
        env.update(
            {"DJANGO_SETTINGS_MODULE": "config.settings_test", "MONGO_DB_NAME": settings.DATABASES["default"]["NAME"]}
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "channels_app.kinds.webchat.stream", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.port = 0
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if "listening on http://" in line:
                self.port = int(line.rsplit(":", 1)[1])
                break
        assert self.port, "the stream process did not start"
        # Its output must not fill the pipe while it runs.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
