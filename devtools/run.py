"""`make run`: the embedded database (unless MONGO_URL is set), migrations, gunicorn and the
worker, all in one terminal: one Ctrl-C stops them all."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from core.env import env_normalize
from devtools.embedded_mongo import (
    EmbeddedMongo,
    die_with_parent,
    free_port,
    ping,
    port_is_free,
    record_url,
    recorded_url,
    server_serving,
    url_for,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


GUNICORN_CONFIG = "deploy/gunicorn.conf.py"


def gunicorn_command(*, bind: str | None = None, workers: str | None = None, threads: str | None = None) -> list[str]:
    """The one way the app is served: by `make run`, the end-to-end tests, `make bench`,
    `make scale` and the systemd unit, all with deploy/gunicorn.conf.py (run from the
    project's root). What a caller gives here overrides the file's SERVER_* defaults."""
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", GUNICORN_CONFIG, "config.wsgi:application"]
    for option, value in (("--bind", bind), ("--workers", workers), ("--threads", threads)):
        if value is not None:
            command += [option, value]
    return command


METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The directory of the workers' wake-up sockets (core.worker_wake), for every process of a host.
WAKE_DIR_ENV = "WORKER_WAKE_DIR"


def metrics_dir_fresh(path: Path) -> str:
    """A directory for prometheus-client's multiprocess mode (core/metrics.py), emptied of an
    earlier run's files: gunicorn's workers and the worker write their metrics there and
    /metrics adds them up, so every process of one run must be given the same one."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return str(path)


def worker_command() -> list[str]:
    """The worker, as `make run`, the end-to-end tests and `make bench` start it."""
    return [sys.executable, "manage.py", "run_worker"]


def webchat_stream_command(port: str) -> list[str]:
    """The web chat's live stream (an async server: one process for every open widget)."""
    return [sys.executable, "-m", "channels_app.kinds.webchat.stream", "--port", port]


def ensure_local_secret_key() -> None:
    if os.environ.get("DJANGO_SECRET_KEY"):
        return
    key_file = DATA / "secret_key"
    if not key_file.exists():
        DATA.mkdir(exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
        say(f"Generated a local DJANGO_SECRET_KEY in {key_file.relative_to(ROOT)} (set your own in production)")


def ensure_local_secrets_key() -> None:
    """The key that encrypts stored secrets (SECRETS_ENCRYPTION_KEYS), made once and kept:
    losing it loses every channel token and signing secret stored with it."""
    if os.environ.get("SECRETS_ENCRYPTION_KEYS"):
        return
    key_file = DATA / "secrets_encryption_keys"
    if not key_file.exists():
        DATA.mkdir(exist_ok=True)
        # Created private, never readable by others even for a moment.
        with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(Fernet.generate_key().decode("ascii"))
        say(f"Generated a local SECRETS_ENCRYPTION_KEYS in {key_file.relative_to(ROOT)} (set your own in production)")


def manage(*args: str, check: bool = True) -> int:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT)
    if check and result.returncode != 0:
        raise SystemExit(result.returncode)
    return result.returncode


def has_superuser() -> bool:
    code = "from django.contrib.auth import get_user_model as g; import sys; sys.exit(0 if g().objects.filter(is_superuser=True).exists() else 1)"  # noqa: E501
    return subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", code], cwd=ROOT).returncode == 0


def offer_admin_account(port: str) -> None:
    if has_superuser():
        say(f"Admin: http://localhost:{port}/admin/ (log in with your admin account)")
        return
    if sys.stdin.isatty():
        answer = input("==> No admin account yet. Create one now? [Y/n] ").strip().lower()
        if answer in ("", "y", "yes"):
            manage("createsuperuser", check=False)
            say(f"Admin: http://localhost:{port}/admin/")
            return
    say("No admin account yet. In a second terminal, create one with:")
    print("      .venv/bin/python manage.py createsuperuser", flush=True)
    say(f"then log in at http://localhost:{port}/admin/")


def stop_with_parent() -> None:
    """Ask Linux to send us SIGTERM when our parent (make) dies, so the servers we started
    never outlive it."""
    die_with_parent()


def positive_int_env(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip()
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"configuration error: {name} must be a whole number of at least 1, got {value!r}")
    return value


def main() -> int:
    os.chdir(ROOT)
    # The same .env the settings read (real environment variables win), so that PORT,
    # SERVER_* and MONGO_URL set there reach this launcher too.
    load_dotenv(os.environ.get("DJANGO_ENV_FILE") or ROOT / ".env", override=False)
    try:
        env_normalize(os.environ)  # old names (MONGO__URL, SERVER__WORKERS, ...) still work
    except ImproperlyConfigured as exc:
        raise SystemExit(f"configuration error: {exc}") from None

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C even when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stop_with_parent()
    port = positive_int_env("PORT", "8000")
    workers = positive_int_env("SERVER_WORKERS", "1")
    threads = positive_int_env("SERVER_THREADS", "8")
    ensure_local_secret_key()
    ensure_local_secrets_key()
    embedded: EmbeddedMongo | None = None
    if os.environ.get("MONGO_URL"):
        say("Using the database at MONGO_URL")
    else:
        try:
            os.environ["MONGO_URL"], embedded = local_database(DATA)
        except KeyboardInterrupt:
            return 130

    # Inherited by gunicorn and the worker (and the worker again when it is restarted, so
    # its counts carry on).
    os.environ[METRICS_DIR_ENV] = metrics_dir_fresh(Path(os.environ.get(METRICS_DIR_ENV) or DATA / "metrics"))
    # gunicorn and the worker share one host here: the webhook wakes an idle worker at once.
    os.environ.setdefault(WAKE_DIR_ENV, str(DATA / "wake"))
    # The web chat's stream beside the app (PORT + 1 unless set); the app tells widgets where.
    stream_port = os.environ.setdefault("WEBCHAT_STREAM_PORT", str(int(port) + 1))
    gunicorn: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    stream: subprocess.Popen[bytes] | None = None
    try:
        manage("migrate", "--no-input", "-v", "0")
        offer_admin_account(port)
        say(f"Serving on http://0.0.0.0:{port} with {workers} worker(s) x {threads} threads. Ctrl-C stops.")
        say(f"API docs: http://localhost:{port}/api/docs/  health: /healthz  readiness: /readyz")
        # Their own sessions: Ctrl-C reaches only this launcher, which then stops them
        # gracefully (SIGTERM) and the database after them.
        gunicorn = subprocess.Popen(
            gunicorn_command(bind=f"0.0.0.0:{port}", workers=workers, threads=threads),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        say("Starting the worker (generates and delivers replies)")
        worker = start_worker()
        say(f"Starting the web chat stream on port {stream_port} (live replies in open widgets)")
        stream = start_stream(stream_port)
        while True:
            code = gunicorn.poll()
            if code is not None:
                say(f"gunicorn exited with status {code}")
                return code
            if worker.poll() is not None:
                # Replies must keep flowing: a worker that died is started again.
                say(f"The worker exited with status {worker.returncode}; starting it again in 2 s")
                time.sleep(2)
                worker = start_worker()
            if stream.poll() is not None:
                say(f"The web chat stream exited with status {stream.returncode}; starting it again in 2 s")
                time.sleep(2)
                stream = start_stream(stream_port)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        for process in (stream, worker, gunicorn):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (stream, worker, gunicorn):
            if process and process.poll() is None:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
        if embedded:
            say("Stopping the embedded database")
            embedded.stop()


def local_database(data: Path, *, wait_s: float = 30.0) -> tuple[str, EmbeddedMongo | None]:
    """This checkout's own embedded server, known by its data folder (`data`/mongo): the one
    already serving that folder (another `make run` of this checkout), or a new one on a free
    port. Never whatever answers on a well-known port: that may be another checkout's. Its URL
    is recorded in `data` for `manage.py` in a second terminal (config/settings.py). Returns the
    app's URL and the server started here (None when it was already running)."""
    storage = data / "mongo"
    running = server_serving(storage)
    if running is not None:
        url = url_for(running.port, host=running.host, app=True)
        deadline = time.monotonic() + wait_s
        while not ping(url, timeout_ms=300):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"error: secantusd (pid {running.pid}) holds {storage} but does not answer on port "
                    f"{running.port}; stop it, then run again"
                )
            time.sleep(0.2)
        say(f"This checkout's embedded database already runs (pid {running.pid}, port {running.port}); using it")
        record_url(data, url)
        return url, None
    # The port of the last run when it is free (a stable address for your own tools), else any.
    previous = urlsplit(recorded_url(data) or "").port
    port = previous if previous and port_is_free(previous) else free_port()
    data.mkdir(parents=True, exist_ok=True)
    say(f"Starting the embedded database (secantusd) on 127.0.0.1:{port}, data in {storage}")
    embedded = EmbeddedMongo(port=port, storage=str(storage), log_file=data / "secantusd.log")
    try:
        embedded.start()
    except BaseException:
        embedded.stop()
        raise
    url = embedded.app_url
    record_url(data, url)
    return url, embedded


def start_worker() -> subprocess.Popen[bytes]:
    return subprocess.Popen(worker_command(), cwd=ROOT, start_new_session=True, preexec_fn=die_with_parent)


def start_stream(port: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(webchat_stream_command(port), cwd=ROOT, start_new_session=True, preexec_fn=die_with_parent)


if __name__ == "__main__":
    sys.exit(main())
