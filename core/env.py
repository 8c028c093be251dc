"""Typed reading of environment variables. A bad value stops start-up with one clear line."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# One naming scheme: AREA_NAME in capitals with single underscores (MONGO_URL, SERVER_WORKERS,
# DJANGO_TIME_ZONE, LLM_MODEL). The names that came before it are still read, as aliases of
# the new one; both set to different values is a configuration error rather than a guess
# (a test run must never pick the production database because an old name was left behind).
# Names owned by other software keep theirs: PORT, OPENAI_*, PROMETHEUS_MULTIPROC_DIR.
ALIASES: dict[str, tuple[str, ...]] = {
    "MONGO_URL": ("MONGO__URL",),
    "MONGO_DB_NAME": ("MONGO__DB_NAME",),
    "MONGO_TIMEOUT_MS": ("MONGO__TIMEOUT_MS",),
    "SERVER_WORKERS": ("SERVER__WORKERS",),
    "SERVER_THREADS": ("SERVER__THREADS",),
    "SERVER_TIMEOUT": ("SERVER__TIMEOUT",),
    "SERVER_ACCESS_LOG": ("SERVER__ACCESS_LOG",),
    "SERVER_BIND": ("SERVER__BIND",),
    "SERVER_FORWARDED_ALLOW_IPS": ("SERVER__FORWARDED_ALLOW_IPS",),
    "DJANGO_TIME_ZONE": ("TIME_ZONE",),
    "CHANNEL_ATTEMPT_TIMEOUT_S": ("CHANNEL_READ_TIMEOUT_S",),
}


def env_lookup(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of `name`, or of one of its old names (ALIASES) when it is not set."""
    environ = os.environ if environ is None else environ
    found = [(key, environ[key]) for key in (name, *ALIASES.get(name, ())) if environ.get(key) not in (None, "")]
    values = {value.strip() for _, value in found}
    if len(values) > 1:
        keys = " and ".join(key for key, _ in found)
        raise ImproperlyConfigured(f"{keys} are the same setting (the second is its old name) and differ: set one")
    if found:
        return found[0][1]
    return environ.get(name)


def env_set(environ: MutableMapping[str, str], name: str, value: str) -> None:
    """Sets `name` for a child process, dropping its old names so that they cannot disagree."""
    for alias in ALIASES.get(name, ()):
        environ.pop(alias, None)
    environ[name] = value


def env_normalize(environ: MutableMapping[str, str]) -> None:
    """Moves every old name's value to its new name, in place, so that launchers and the
    processes they start see one name only. Raises ImproperlyConfigured on a disagreement."""
    for name in ALIASES:
        value = env_lookup(name, environ)
        if value is not None and value != "":
            env_set(environ, name, value)


def _raw(name: str) -> str | None:
    value = env_lookup(name)
    return value.strip() if value is not None else None


def _label(name: str) -> str:
    """The name to put in an error: the one that was set (an old name says so)."""
    for alias in ALIASES.get(name, ()):
        if os.environ.get(alias) not in (None, "") and os.environ.get(name) in (None, ""):
            return f"{alias} (now named {name})"
    return name


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str:
    value = _raw(name)
    if value:
        return value
    if required:
        raise ImproperlyConfigured(f"{_label(name)} must be set")
    return default or ""


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{_label(name)} must be true or false, got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{_label(name)} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{_label(name)} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{_label(name)} must be at most {maximum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{_label(name)} must be a number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{_label(name)} must be at least {minimum}, got {number}")
    return number


def env_choice(name: str, default: str, choices: Iterable[str]) -> str:
    allowed = list(choices)
    value = (_raw(name) or default).lower()
    if value not in allowed:
        raise ImproperlyConfigured(f"{_label(name)} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_mongo_url(name: str, default: str) -> str:
    value = _raw(name) or default
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ImproperlyConfigured(f"{_label(name)} must start with mongodb:// or mongodb+srv://, got {value!r}")
    return value
