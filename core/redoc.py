"""ReDoc's script, from drf-spectacular-sidecar, without its one request to another host.

ReDoc's sidebar always shows Redocly's logo, loaded from cdn.redoc.ly, and has no option to
leave it out. The bundle is served here with that image's address taken out (the image then
has no `src`, so the browser asks for nothing; the page's CSS hides it), read and patched once
per process."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.views.decorators.http import require_safe

BUNDLE = "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
# The logo's element in the minified bundle, as ReDoc 2.x writes it.
REDOCLY_LOGO_SRC = b'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'


@dataclass(frozen=True)
class Bundle:
    plain: bytes
    compressed: bytes
    etag: str


@cache
def redoc_bundle() -> Bundle:
    found = finders.find(BUNDLE)
    path = found[0] if isinstance(found, list) else found
    if not path:
        raise FileNotFoundError(BUNDLE)
    plain = Path(path).read_bytes().replace(REDOCLY_LOGO_SRC, b"src:void 0")
    return Bundle(
        plain=plain, compressed=gzip.compress(plain, mtime=0), etag=f'"{hashlib.sha256(plain).hexdigest()[:32]}"'
    )


@require_safe
def redoc_script(request: HttpRequest) -> HttpResponse:
    bundle = redoc_bundle()
    if request.headers.get("If-None-Match") == bundle.etag:
        response: HttpResponse = HttpResponseNotModified()
    elif "gzip" in request.headers.get("Accept-Encoding", ""):
        response = HttpResponse(bundle.compressed, content_type="text/javascript; charset=utf-8")
        response["Content-Encoding"] = "gzip"
    else:
        response = HttpResponse(bundle.plain, content_type="text/javascript; charset=utf-8")
    response["ETag"] = bundle.etag
    response["Cache-Control"] = "public, max-age=3600"
    response["Vary"] = "Accept-Encoding"
    return response
