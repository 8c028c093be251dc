"""Test settings: the normal settings plus a fast password hasher."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("CHANNEL_ALLOW_PRIVATE_URLS", "true")

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]
# Tests exercise retries; keep their waits short unless a test overrides them.
CHANNEL_RETRY_BUDGET_S = 2.0
CHANNEL_RETRY_AFTER_CAP_S = 1.0
