from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

try:
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()

    from core.fields import secrets_key_check

    # A wrong SECRETS_ENCRYPTION_KEYS stops start-up here, not each request that needs a secret.
    secrets_key_check()
except ImproperlyConfigured as exc:
    # One clear line instead of a traceback per worker.
    print(f"configuration error: {exc}", file=sys.stderr)
    sys.exit(4)
