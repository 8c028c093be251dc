"""`make test`: a throwaway embedded database (unless MONGO_URL is set), then pytest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.env import env_normalize
from devtools.embedded_mongo import EmbeddedMongo
from devtools.run import stop_with_parent

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    stop_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = dict(os.environ)
    try:
        env_normalize(env)  # old names (MONGO__URL, ...) still work; children see the new ones
    except ImproperlyConfigured as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    embedded: EmbeddedMongo | None = None
    if not env.get("MONGO_URL"):
        # A fresh in-memory server per session: its memory grows over long runs.
        embedded = EmbeddedMongo(storage=":memory:").start()
        env["MONGO_URL"] = embedded.url
        print(f"==> Throwaway embedded database on port {embedded.port}", flush=True)
    else:
        print("==> Running the suite against MONGO_URL", flush=True)
    try:
        code = subprocess.run([sys.executable, "-m", "pytest", *argv], env=env).returncode
        if code < 0:
            # Killed by a signal (SIGKILL from the kernel's OOM killer, say): say so plainly
            # instead of leaving only make's "Error 247" behind.
            name = signal.Signals(-code).name
            print(f"==> pytest was killed by {name} before it could report", file=sys.stderr, flush=True)
            return 128 - code
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        if embedded:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
