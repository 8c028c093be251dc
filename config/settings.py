"""Settings, read from the environment (and an optional `.env` file). See `.env.example`."""

from __future__ import annotations

import secrets
from pathlib import Path

from core.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_mongo_url,
    env_str,
    load_dotenv,
)

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(str(BASE_DIR / ".env"))

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
    "rest_framework.authtoken",
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
MONGO_URL = env_mongo_url("MONGO__URL", "mongodb://localhost:27017")
MONGO_DB_NAME = env_str("MONGO__DB_NAME", "chatbot")
# pymongo waits 30 s for a server by default; an outage must answer 503 within seconds.
MONGO_TIMEOUT_MS = env_int("MONGO__TIMEOUT_MS", 3000, minimum=100)
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
DEFAULT_AUTO_FIELD = "django_mongodb_backend.fields.ObjectIdAutoField"
MIGRATION_MODULES = {
    "admin": "mongo_migrations.admin",
    "auth": "mongo_migrations.auth",
    "contenttypes": "mongo_migrations.contenttypes",
}

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
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files: served by the app itself (WhiteNoise), no web server needed ----------
STATIC_URL = "static/"
# `collectstatic` target for deployments that want it; without it, WhiteNoise serves
# straight from the apps' static folders.
_static_root = env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STATIC_ROOT: str | None = _static_root if Path(_static_root).is_dir() else None
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security ---------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# The webhook limits its own body to 1 MiB with a 413; this is Django's form-parsing cap.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024 + 1

# --- REST framework and OpenAPI ---------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
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
}

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ["debug", "info", "warning", "error", "critical"]).upper()
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ["text", "json"])
LOGGING_CONFIG = None  # configured below, after the values are validated

from config.logging import configure_logging  # noqa: E402

configure_logging(level=LOG_LEVEL, fmt=LOG_FORMAT)

# --- The platform -----------------------------------------------------------------------
# The webhook stores the message and answers at once; the worker (`manage.py run_worker`,
# started by `make run`) generates and delivers the reply. With a wait, the webhook waits at
# most this long for the outcome and answers with what it knows then.
WEBHOOK_REPLY_WAIT_MS = env_int("WEBHOOK_REPLY_WAIT_MS", 0, minimum=0, maximum=30_000)

# LLM
# "mock" (deterministic, the default), "openai" (any chat-completions server), or the dotted
# path of your own callable.
LLM_BACKEND = env_str("LLM_BACKEND", "mock")
LLM_MOCK_DELAY_MS = env_int("LLM_MOCK_DELAY_MS", 0, minimum=0, maximum=600_000)
LLM_CONTEXT_MESSAGES = env_int("LLM_CONTEXT_MESSAGES", 20, minimum=1, maximum=1000)
LLM_TIMEOUT_S = env_float("LLM_TIMEOUT_S", 30.0, minimum=0.1)
# Generation attempts per customer message before the bot's fallback text (or "failed").
LLM_MAX_ATTEMPTS = env_int("LLM_MAX_ATTEMPTS", 5, minimum=1, maximum=100)
# LLM calls in flight at once per worker process; a call that times out gives its slot back.
LLM_MAX_CONCURRENCY = env_int("LLM_MAX_CONCURRENCY", 32, minimum=1, maximum=1024)
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

# Outbound delivery to channels. nginx drops header names with underscores by default
# (underscores_in_headers off), hence the header name is configurable.
CHANNEL_AUTH_HEADER = env_str("CHANNEL_AUTH_HEADER", "x-chat_auth_token")
CHANNEL_CONNECT_TIMEOUT_S = env_float("CHANNEL_CONNECT_TIMEOUT_S", 3.0, minimum=0.05)
# One attempt's whole deadline: connecting, sending, and reading the answer (at most 64 KiB
# of it). CHANNEL_READ_TIMEOUT_S is its older name.
CHANNEL_ATTEMPT_TIMEOUT_S = env_float(
    "CHANNEL_ATTEMPT_TIMEOUT_S", env_float("CHANNEL_READ_TIMEOUT_S", 10.0, minimum=0.05), minimum=0.05
)
# A channel's Retry-After is honoured up to this long.
CHANNEL_RETRY_AFTER_CAP_S = env_float("CHANNEL_RETRY_AFTER_CAP_S", 3600.0, minimum=0)
CHANNEL_ALLOW_PRIVATE_URLS = env_bool("CHANNEL_ALLOW_PRIVATE_URLS", False)
# Attempts per reply before it is dead; retries wait DELIVERY_RETRY_BASE_S, doubling each
# time, up to DELIVERY_RETRY_MAX_S (with jitter).
DELIVERY_MAX_ATTEMPTS = env_int("DELIVERY_MAX_ATTEMPTS", 10, minimum=1)
DELIVERY_RETRY_BASE_S = env_float("DELIVERY_RETRY_BASE_S", 1.0, minimum=0.01)
DELIVERY_RETRY_MAX_S = env_float("DELIVERY_RETRY_MAX_S", 600.0, minimum=0.01)

# The worker. Each process runs WORKER_THREADS dialogues at once; one channel gets at most
# WORKER_CHANNEL_CONCURRENCY of them and one bot's LLM calls at most
# WORKER_BOT_LLM_CONCURRENCY, so a slow tenant cannot take the others' capacity.
WORKER_THREADS = env_int("WORKER_THREADS", 32, minimum=1, maximum=1024)
WORKER_CHANNEL_CONCURRENCY = env_int("WORKER_CHANNEL_CONCURRENCY", 4, minimum=1, maximum=1024)
WORKER_BOT_LLM_CONCURRENCY = env_int("WORKER_BOT_LLM_CONCURRENCY", 8, minimum=1, maximum=1024)
# How often an idle worker looks for due work (an indexed query on due dialogues only).
WORKER_POLL_MS = env_int("WORKER_POLL_MS", 25, minimum=1, maximum=60_000)
# The circuit breaker: after this many failed attempts in a row a channel gets nothing for
# WORKER_BREAKER_COOLDOWN_S (doubling while probes keep failing, up to 10 minutes).
WORKER_BREAKER_THRESHOLD = env_int("WORKER_BREAKER_THRESHOLD", 5, minimum=1)
WORKER_BREAKER_COOLDOWN_S = env_float("WORKER_BREAKER_COOLDOWN_S", 30.0, minimum=0.1)

# Bot and channel look-ups are cached per process for this long; a rotated secret, a
# deactivated channel or a new channel URL takes effect within this time.
AUTH_CACHE_TTL_S = env_float("AUTH_CACHE_TTL_S", 1.0, minimum=0)
