from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Note: Django's ASGI handler drops request headers whose names contain underscores, so
# the webhook's `x-chatbot_auth_token` header only works through WSGI (gunicorn with
# --header-map dangerous, as `make run` starts it). Prefer config.wsgi.
application = get_asgi_application()
