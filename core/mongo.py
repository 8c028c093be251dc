"""Raw collections, for the paths where one pymongo round trip beats the ORM's (the webhook,
the worker). django-mongodb-backend's connection hands them out; typed here once."""

from __future__ import annotations

from typing import Any, cast

from django.db import connection
from pymongo.collection import Collection


def mongo_collection(name: str) -> Collection[dict[str, Any]]:
    return cast(Any, connection).get_collection(name)
