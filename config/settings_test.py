"""Test settings: the normal settings plus a fast password hasher."""

from __future__ import annotations

import os

from core.env import env_normalize

# The old names of variables (MONGO__URL, ...) become the new ones here, so that every server a
# test starts from this environment sees one name only.
env_normalize(os.environ)
os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
# A fixed Fernet key (32 bytes, "test-secrets-key-not-for-prod!!!"), inherited by the servers tests start.
os.environ.setdefault("SECRETS_ENCRYPTION_KEYS", "dGVzdC1zZWNyZXRzLWtleS1ub3QtZm9yLXByb2QhISE=")
os.environ.setdefault("CHANNEL_ALLOW_PRIVATE_URLS", "true")
# No rate limits unless a test asks for them (core/tests/test_ratelimit.py): the suite's own
# servers take thousands of requests a minute from one address and one token.
for _rate in ("API_RATE", "WEBHOOK_AUTH_FAILURE_RATE", "LOGIN_FAILURE_RATE", "WEBHOOK_BOT_RATE"):
    os.environ.setdefault(_rate, "0")

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]
# Tests exercise retries; keep their waits short unless a test overrides them.
CHANNEL_RETRY_AFTER_CAP_S = 1.0
# Counts written at once, so that an in-process test reads what it just did (core.counters).
# The servers the tests start (tests/support/live_server.py) batch them as production does.
if "COUNTERS_FLUSH_S" not in os.environ:
    COUNTERS_FLUSH_S = 0.0
# The in-process tests write thousands of documents at once (setup, flush) on a machine that
# also runs servers: bound each operation generously unless a test asks for a bound (the
# outage tests give their own servers MONGO_TIMEOUT_MS).
if "MONGO_TIMEOUT_MS" not in os.environ:
    DATABASES["default"]["OPTIONS"]["timeoutMS"] = 30_000  # type: ignore[index]  # noqa: F405
    # The admin's and the API's requests likewise, unless a test asks for a read budget.
    if "MONGO_READ_TIMEOUT_MS" not in os.environ:
        MONGO_READ_TIMEOUT_MS = 30_000
