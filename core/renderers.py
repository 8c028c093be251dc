"""The API's renderers. Its own module: DRF imports the renderer classes while it builds
APIView, so this module may import nothing that imports DRF's views."""

from __future__ import annotations

from typing import Any

from rest_framework import renderers
from rest_framework.request import clone_request


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF draws the form under the answer to a form's write from the serializer of the answer,
    which here is the read shape (every field read-only: an empty form), not from the view's
    (`get_serializer_class`, by action). Our views validate with their input serializers and
    raise, so an answer never carries a form's errors: draw every form as a GET would, for the
    object as it now is."""

    def get_rendered_html_form(self, data: Any, view: Any, method: str, request: Any) -> Any:
        if request.method == method:
            request = clone_request(request, "GET")
        return super().get_rendered_html_form(data, view, method, request)
