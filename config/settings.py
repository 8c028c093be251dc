"""Settings, read from the environment (and an optional `.env` file). See `.env.example`."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from dotenv import load_dotenv

from core.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_mongo_url,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# `.env` in the project folder (or the file DJANGO_ENV_FILE names), if there is one; variables
# set in the real environment win. devtools/run.py reads the same file the same way first.
load_dotenv(os.environ.get("DJANGO_ENV_FILE") or BASE_DIR / ".env", override=False)

DEBUG = env_bool("DJANGO_DEBUG", False)

# `make run` generates a key for local use and keeps it in .data/ (never committed), so a
# second terminal's `manage.py` finds the same one. Outside development the key is required.
_local_key_file = BASE_DIR / ".data" / "secret_key"
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY and _local_key_file.is_file():
    SECRET_KEY = _local_key_file.read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set (or DJANGO_DEBUG=true for development)")
    SECRET_KEY = "insecure-dev-" + secrets.token_urlsafe(32)

# The keys that encrypt the secrets we store and must use (channel tokens, signing secrets, LLM
# provider keys): comma-separated Fernet keys, the first encrypts, all decrypt (core.crypto;
# rotation in the README). Read like DJANGO_SECRET_KEY: `make run` keeps a local one in .data/.
# Without one in development, a key derived from SECRET_KEY (stable as long as it is).
_local_secrets_keys_file = BASE_DIR / ".data" / "secrets_encryption_keys"
_secrets_keys = env_str("SECRETS_ENCRYPTION_KEYS")
if not _secrets_keys and _local_secrets_keys_file.is_file():
    _secrets_keys = _local_secrets_keys_file.read_text().strip()
if not _secrets_keys:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRETS_ENCRYPTION_KEYS must be set (or DJANGO_DEBUG=true for development)")
    _secrets_keys = base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode("ascii")
from core.crypto import parse_keys  # noqa: E402

SECRETS_ENCRYPTION_KEYS = parse_keys(_secrets_keys)

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "config.apps.MongoAdminConfig",
    "config.apps.MongoAuthConfig",
    "config.apps.MongoContentTypesConfig",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_mongodb_backend",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "chatbots",
    "channels_app",
    "dialogues",
    # Above dialogues: the LLM providers, and the worker that drives everything.
    "llm",
    "worker",
]

MIDDLEWARE = [
    "core.middleware.RequestIdMiddleware",
    # Before anything reads the URL or the database: an over-long URL is a JSON 414.
    "core.middleware.UrlLengthLimitMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
# Unset: the embedded server `make run` started for this checkout, whose URL it records in
# .data/mongo-url (devtools/run.py), so `manage.py` in a second terminal reaches the same
# database; without one, the usual local MongoDB.
_local_mongo_url = BASE_DIR / ".data" / "mongo-url"
MONGO_URL = env_mongo_url(
    "MONGO_URL", _local_mongo_url.read_text().strip() if _local_mongo_url.is_file() else "mongodb://localhost:27017"
)
MONGO_DB_NAME = env_str("MONGO_DB_NAME", "chatbot")
# pymongo waits 30 s for a server by default; an outage must answer 503 within seconds.
MONGO_TIMEOUT_MS = env_int("MONGO_TIMEOUT_MS", 3000, minimum=100)
DATABASES = {
    "default": {
        "ENGINE": "django_mongodb_backend",
        "HOST": MONGO_URL,
        "NAME": MONGO_DB_NAME,
        "OPTIONS": {
            "serverSelectionTimeoutMS": MONGO_TIMEOUT_MS,
            "connectTimeoutMS": MONGO_TIMEOUT_MS,
            # Every operation is bounded, not only finding a server: a hung database (a
            # stalled primary, a partition that drops packets) fails within this time too.
            "timeoutMS": MONGO_TIMEOUT_MS,
            "appname": "chatbot-platform",
        },
        "TEST": {"NAME": f"{MONGO_DB_NAME}_test"},
    },
}
# The admin and the management API use a connection pool of their own (the same database, a
# second MongoClient; `core.db_routing`), so the webhook and the worker never queue behind an
# operator's read. Its OPTIONS are the default's (the same dict: a change applies to both).
DATABASES["operators"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
DATABASE_ROUTERS = ["core.db_routing.OperatorsRouter"]
# How long one admin page or API request may spend in the database (all its queries together)
# before it is stopped and answered 422 "narrow it" (the database still answering): a heavy
# read can never hold a connection for long, nor count as an outage. At most MONGO_TIMEOUT_MS.
MONGO_READ_TIMEOUT_MS = min(env_int("MONGO_READ_TIMEOUT_MS", 2000, minimum=100), MONGO_TIMEOUT_MS)
DEFAULT_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
MIGRATION_MODULES = {
    "admin": "mongo_migrations.admin",
    "auth": "mongo_migrations.auth",
    "contenttypes": "mongo_migrations.contenttypes",
}

# Django's ModelBackend, with permissions read in a way the embedded server answers correctly,
# and a lockout after repeated failed sign-ins (LOGIN_FAILURE_RATE, see "Rate limits" below).
AUTHENTICATION_BACKENDS = ["core.auth_backends.LockoutModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Internationalisation --------------------------------------------------------------
LANGUAGE_CODE = env_choice("DJANGO_LANGUAGE_CODE", "en", ["en", "en-us", "ru"])
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Times are stored in UTC; the admin shows them in TIME_ZONE, one format with the zone
# ("2026-11-24 09:53:23 UTC", config/formats/); the API writes ISO 8601.
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC") or "UTC"
FORMAT_MODULE_PATH = ["config.formats"]
USE_I18N = True
USE_TZ = True

# --- Static files: served by the app itself (WhiteNoise), no web server needed ----------
STATIC_URL = "static/"
# `collectstatic`'s target, always set. Once it has run (every production deploy runs
# `manage.py collectstatic --no-input`), WhiteNoise serves the collected files compressed
# (gzip, and brotli when installed) under content-hashed names, cached as immutable. Until then
# (`make run`, tests) pages name the plain files, served straight from the apps' folders.
STATIC_ROOT = env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "core.staticfiles.CompressedManifestStorage"
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# WhiteNoise warns at every start when STATIC_ROOT is missing, as it is before the first
# `collectstatic` (expected, see above): an empty folder (git-ignored) says the same quietly.
try:
    Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
except OSError:
    pass  # a read-only deployment that did not collect: WhiteNoise's warning is then right

# --- Security ---------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Behind a TLS-terminating proxy: the header (and value) by which it says the request came
# over HTTPS, e.g. `X-Forwarded-Proto: https`. Only for a proxy that sets or strips it on
# every request; a client could otherwise claim HTTPS. (gunicorn with --forwarded-allow-ips
# already does this for the proxies it trusts.)
_proxy_ssl_header = env_str("DJANGO_SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header:
    _name, _sep, _value = _proxy_ssl_header.partition(":")
    if not _sep or not _name.strip() or not _value.strip():
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"DJANGO_SECURE_PROXY_SSL_HEADER must look like 'X-Forwarded-Proto: https', got {_proxy_ssl_header!r}"
        )
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _name.strip().upper().replace("-", "_"), _value.strip())
# Served over HTTPS: redirect plain HTTP to it and send cookies over HTTPS only. Off by
# default, because `make run` serves plain http://localhost.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
# Load balancers' health checks often come over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", SECURE_SSL_REDIRECT)
# HSTS: browsers will refuse plain HTTP to this host for that long. Set it once HTTPS works
# for good (start small, e.g. 3600, then 31536000): it cannot be taken back before it expires.
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
# The webhook limits its own body to 1 MiB with a 413; this is Django's form-parsing cap.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024 + 1

# --- REST framework and OpenAPI ---------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # `Authorization: Token <key>`, checked against hashed keys (core.models.ApiToken).
        "core.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Staff only, each user limited by their model permissions (view/add/change/delete).
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.StaffModelPermissions"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        # DRF's, drawing the form under a write's answer from the view's input serializer.
        "core.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chat-bot platform API",
    "DESCRIPTION": "Management API for bots, channels and dialogues, and the channel webhook.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {},
    # The API is documented as JSON only (the browsable API's form parsers stay, undocumented).
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # Bounds the server enforces that drf-spectacular leaves out.
        "core.schema.input_bounds",
        # Every status each operation can answer, in one error shape; the webhook's auth.
        "core.schema.error_responses",
        # Links from the operations that return ids to those that take them.
        "core.schema.id_links",
    ],
}

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ["debug", "info", "warning", "error", "critical"]).upper()
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ["text", "json"])
# A `logging.config.dictConfig` file (.json or .toml) merged over the defaults: more handlers
# (a rotating file, syslog, a JSON file for a log shipper), levels per logger (README, "Logging").
# A relative path is taken from the project folder.
LOG_CONFIG = env_str("LOG_CONFIG", "")
LOGGING_CONFIG = None  # configured below, after the values are validated

from config.logging import LogConfigError, configure_logging  # noqa: E402

try:
    configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT, config_file=str(BASE_DIR / LOG_CONFIG) if LOG_CONFIG else "")
except LogConfigError as _error:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(str(_error)) from None

# --- The platform -----------------------------------------------------------------------
# The webhook stores the message and answers at once; the worker (`manage.py run_worker`,
# started by `make run`) generates and delivers the reply. With a wait, the webhook waits at
# most this long for the outcome and answers with what it knows then.
WEBHOOK_REPLY_WAIT_MS = env_int("WEBHOOK_REPLY_WAIT_MS", 0, minimum=0, maximum=30_000)
# At most this many dialogues per bot opened through `channel_id` (conversations inside a
# channel, `chat_id` of the client's choosing); past it a message that would open another is
# answered 409 and nothing is stored. Messages into existing dialogues, and the plain contract
# (one dialogue per channel), are never limited. 0: unlimited. 100,000 is far above any real
# bot's live conversations while bounding what one leaked secret can fill the database with.
# Counted per bot in `dialogue_counters` (`manage.py dialogue_counters_recount` after bulk
# deletions: deleting a channel leaves its dialogues counted until then).
WEBHOOK_MAX_DIALOGUES_PER_BOT = env_int("WEBHOOK_MAX_DIALOGUES_PER_BOT", 100_000, minimum=0)

# LLM
# "mock" (deterministic, the default), "openai" (any chat-completions server), or the dotted
# path of your own callable.
LLM_BACKEND = env_str("LLM_BACKEND", "mock")
LLM_MOCK_DELAY_MS = env_int("LLM_MOCK_DELAY_MS", 0, minimum=0, maximum=600_000)
LLM_CONTEXT_MESSAGES = env_int("LLM_CONTEXT_MESSAGES", 20, minimum=1, maximum=1000)
LLM_TIMEOUT_S = env_float("LLM_TIMEOUT_S", 30.0, minimum=0.1)
# Generation attempts per customer message before the bot's fallback text (or "failed").
LLM_MAX_ATTEMPTS = env_int("LLM_MAX_ATTEMPTS", 5, minimum=1, maximum=100)
# LLM calls in flight at once per worker process (waited for on its event loop, `llm.aio`; no
# thread per call); a call that times out gives its place back. A provider's own limits are
# kept besides (`llm.pacing`).
LLM_MAX_CONCURRENCY = env_int("LLM_MAX_CONCURRENCY", 1024, minimum=1, maximum=10_000)
# Threads for a custom LLM_BACKEND callable (synchronous), per worker process.
LLM_CUSTOM_THREADS = env_int("LLM_CUSTOM_THREADS", 32, minimum=1, maximum=1024)
# The default model; a bot's own `llm_model` overrides it.
LLM_MODEL = env_str("LLM_MODEL", "gpt-4o-mini")
# The "openai" backend (OpenAI, or any server speaking its chat-completions protocol: Ollama,
# vLLM, ...). The SDK's own variables, read here and passed to its client explicitly, so that
# `.env` and settings overrides are what it uses. Blank base URL: https://api.openai.com/v1.
# The key is never logged or shown.
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "")
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
# How a bot's max_output_tokens is sent: OpenAI wants max_completion_tokens (its reasoning
# models reject max_tokens); Ollama, llama.cpp and older servers read max_tokens. "auto": the
# former for api.openai.com, the latter for any other server.
LLM_MAX_TOKENS_FIELD = env_choice("LLM_MAX_TOKENS_FIELD", "auto", ["auto", "max_tokens", "max_completion_tokens"])
# Pacing by the providers' limits (llm.pacing): how often each worker process syncs with the
# others through the database (a 429's block reaches the other processes within this time),
# and at most this many of one bot's calls in flight per provider and process (0: no ceiling;
# the bots of a provider take turns whatever it is).
LLM_PACING_SYNC_MS = env_int("LLM_PACING_SYNC_MS", 250, minimum=10, maximum=60_000)
LLM_BOT_CONCURRENCY_CEILING = env_int("LLM_BOT_CONCURRENCY_CEILING", 0, minimum=0, maximum=100_000)

# Outbound delivery to channels. nginx drops header names with underscores by default
# (underscores_in_headers off), hence the header name is configurable.
CHANNEL_AUTH_HEADER = env_str("CHANNEL_AUTH_HEADER", "x-chat_auth_token")
CHANNEL_CONNECT_TIMEOUT_S = env_float("CHANNEL_CONNECT_TIMEOUT_S", 3.0, minimum=0.05)
# One attempt's whole deadline: connecting, sending, and reading the answer (at most 64 KiB
# of it). CHANNEL_READ_TIMEOUT_S is its older name.
CHANNEL_ATTEMPT_TIMEOUT_S = env_float("CHANNEL_ATTEMPT_TIMEOUT_S", 10.0, minimum=0.05)
# A channel's Retry-After is honoured up to this long.
CHANNEL_RETRY_AFTER_CAP_S = env_float("CHANNEL_RETRY_AFTER_CAP_S", 3600.0, minimum=0)
CHANNEL_ALLOW_PRIVATE_URLS = env_bool("CHANNEL_ALLOW_PRIVATE_URLS", False)
# After a channel's signing secret is rotated, replies carry a signature made with the old
# secret too for this long (Standard Webhooks' space-separated list), so the channel can switch.
CHANNEL_SIGNING_OVERLAP_S = env_float("CHANNEL_SIGNING_OVERLAP_S", 24 * 3600.0, minimum=0)
# Attempts per reply before it is dead; retries wait DELIVERY_RETRY_BASE_S, doubling each
# time, up to DELIVERY_RETRY_MAX_S (with jitter).
DELIVERY_MAX_ATTEMPTS = env_int("DELIVERY_MAX_ATTEMPTS", 10, minimum=1)
DELIVERY_RETRY_BASE_S = env_float("DELIVERY_RETRY_BASE_S", 1.0, minimum=0.01)
DELIVERY_RETRY_MAX_S = env_float("DELIVERY_RETRY_MAX_S", 600.0, minimum=0.01)

# The worker. Each process holds up to WORKER_DIALOGUES dialogues at once: a dialogue waiting
# for its LLM answer holds no thread, and WORKER_THREADS threads run the database work and the
# deliveries in between. One channel gets at most WORKER_CHANNEL_CONCURRENCY delivery attempts
# at once and one bot at most WORKER_BOT_LLM_CONCURRENCY LLM calls, so a busy tenant cannot take
# the others' capacity.
WORKER_DIALOGUES = env_int("WORKER_DIALOGUES", 1024, minimum=1, maximum=10_000)
WORKER_THREADS = env_int("WORKER_THREADS", 32, minimum=1, maximum=1024)
WORKER_CHANNEL_CONCURRENCY = env_int("WORKER_CHANNEL_CONCURRENCY", 4, minimum=1, maximum=1024)
WORKER_BOT_LLM_CONCURRENCY = env_int("WORKER_BOT_LLM_CONCURRENCY", 512, minimum=1, maximum=10_000)
# How often a worker looks for due work (an indexed query on due dialogues only) while it has
# had work in the last 2 s; after that the wait doubles up to WORKER_IDLE_POLL_MS, which bounds
# how long the first message after a quiet spell waits when nothing on the worker's host wakes it.
WORKER_POLL_MS = env_int("WORKER_POLL_MS", 25, minimum=1, maximum=60_000)
WORKER_IDLE_POLL_MS = env_int("WORKER_IDLE_POLL_MS", 1000, minimum=1, maximum=60_000)
# A directory of Unix datagram sockets, one per worker process on this host: the webhook and the
# admin send each one a byte when they make work, so an idle worker looks at once
# (core.worker_wake). Unset: no wake-ups, the poll alone. Every process of a host gets the same.
WORKER_WAKE_DIR = env_str("WORKER_WAKE_DIR", "")
# The circuit breaker: after this many failed attempts in a row a channel gets nothing for
# WORKER_BREAKER_COOLDOWN_S (doubling while probes keep failing, up to 10 minutes).
WORKER_BREAKER_THRESHOLD = env_int("WORKER_BREAKER_THRESHOLD", 5, minimum=1)
WORKER_BREAKER_COOLDOWN_S = env_float("WORKER_BREAKER_COOLDOWN_S", 30.0, minimum=0.1)

# Bot and channel look-ups are cached per process for this long; a rotated secret, a
# deactivated channel or a new channel URL takes effect within this time.
AUTH_CACHE_TTL_S = env_float("AUTH_CACHE_TTL_S", 1.0, minimum=0)

# --- Metrics (Prometheus, GET /metrics) -------------------------------------------------
# Scrapers send `Authorization: Bearer <METRICS_TOKEN>`; unset, /metrics answers 404 (off).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# prometheus-client's multiprocess mode: every process (gunicorn's workers, the worker) writes
# its metrics to files in this directory and a scrape adds them all up. `make run`, the tests'
# servers and `make bench` give each run a fresh one; gunicorn started by hand without it
# makes its own (deploy/gunicorn.conf.py). Unset (manage.py commands, the in-process tests),
# each process counts on its own. prometheus-client reads the variable itself when first
# imported, which is after this.
METRICS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", "")
if METRICS_MULTIPROC_DIR:
    Path(METRICS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
else:
    import os as _os

    # Present but blank would make prometheus-client write its files to the current folder.
    _os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
# The scrape-time gauges (backlog, open breakers) read the database at most this often per
# process; the admin's dashboard, ADMIN_DASHBOARD_CACHE_S.
METRICS_SCRAPE_CACHE_S = env_float("METRICS_SCRAPE_CACHE_S", 5.0, minimum=0)
ADMIN_DASHBOARD_CACHE_S = env_float("ADMIN_DASHBOARD_CACHE_S", 10.0, minimum=0)
# Reports' counters (a bot's LLM usage, the dashboard's hours: core.counters) are added up in
# memory and written this often (seconds), one write per document. 0: each count at once.
COUNTERS_FLUSH_S = env_float("COUNTERS_FLUSH_S", 2.0, minimum=0)

# --- Bot secrets ------------------------------------------------------------------------
# After `rotate_token` (without `overlap_minutes`), the replaced secret keeps working this long
# (seconds). 0: it stops at once.
BOT_SECRET_OVERLAP_S = env_float("BOT_SECRET_OVERLAP_S", 0.0, minimum=0)

# --- Rate limits ------------------------------------------------------------------------
# Fixed-window counters in MongoDB (core.ratelimit), shared by every process and host. Rates
# are "<n>/<period>" (s, m, h, d; e.g. "20/minute", "5/15m"); "0" turns a limit off.
# Failed webhook authentications per client address; over it the webhook answers 429 with
# Retry-After before it even hashes the secret.
WEBHOOK_AUTH_FAILURE_RATE = env_str("WEBHOOK_AUTH_FAILURE_RATE", "20/minute")
# Failed sign-ins (admin, API browser) per client address and user name; over it even the right
# password is refused until the window ends.
LOGIN_FAILURE_RATE = env_str("LOGIN_FAILURE_RATE", "5/15minute")
# Management API requests per token (or signed-in user); over it, 429 with Retry-After.
API_RATE = env_str("API_RATE", "600/minute")
# Webhook requests per bot, from all its channels together; over it, 429 with Retry-After.
# Leased to each process in batches of a twentieth of the limit (core.ratelimit), so it costs
# a database round trip every few hundred requests, not one per request. The default, 200
# messages/s on average, is twice what one host's database ingests (README "Benchmarks"): it
# stops a runaway channel from taking a shared deployment's whole capacity in bursts, and
# `make bench` never reaches it.
WEBHOOK_BOT_RATE = env_str("WEBHOOK_BOT_RATE", "12000/minute")
# Behind a proxy that sets it on every request (e.g. "X-Real-IP"): the header holding the
# client's address. Blank: REMOTE_ADDR. Never a header clients can set themselves.
RATE_LIMIT_CLIENT_IP_HEADER = env_str("RATE_LIMIT_CLIENT_IP_HEADER", "")
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["core.throttling.ApiRateThrottle"]


from core.ratelimit import parse_rate  # noqa: E402

for _rate_setting in ("WEBHOOK_AUTH_FAILURE_RATE", "LOGIN_FAILURE_RATE", "API_RATE", "WEBHOOK_BOT_RATE"):
    try:
        parse_rate(globals()[_rate_setting])
    except ValueError as _error:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{_rate_setting}: {_error}") from None
