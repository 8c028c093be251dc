from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from channels_app.kinds import urls as kind_urls
from core import redoc
from core import views as core_views
from dialogues.metrics import scrape_collectors

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("favicon.ico", core_views.favicon, name="favicon"),
    # The scrape-time gauges come from the app whose data they count; core serves them.
    path("metrics", core_views.metrics, {"collectors": scrape_collectors()}, name="metrics"),
    # The first hour: `/` is the operators' admin; `/api/` lists the endpoints and the docs.
    path("", RedirectView.as_view(pattern_name="admin:inbox", permanent=False), name="root"),
    # Django's set_language, which also keeps the choice on the user (core.preferences).
    path("i18n/setlang/", core_views.language_set, name="set_language"),
    path("admin/", admin.site.urls),
    # An exact path, before the apps' includes (whose routes all have something after `api/`).
    path("api/", core_views.api_root, name="api-root"),
    path("api/webhook/", include("dialogues.webhook.urls")),
    # Before the channels' router, whose `channels/<id>/` would otherwise be asked first.
    path("api/channels/kinds/", include(kind_urls.api_patterns)),
    # The channels' side of the native kinds (inbound endpoints, the web chat widget).
    path("channels/", include(kind_urls.channel_patterns)),
    path("api/", include("chatbots.urls")),
    path("api/", include("channels_app.urls")),
    path("api/", include("dialogues.urls")),
    path("api/", include("llm.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    # ReDoc's script without the logo it would load from cdn.redoc.ly (templates/drf_spectacular/redoc.html).
    path("api/redoc/redoc.standalone.js", redoc.redoc_script, name="redoc-script"),
    path("docs", RedirectView.as_view(pattern_name="swagger-ui", permanent=False)),
    path("docs/", RedirectView.as_view(pattern_name="swagger-ui", permanent=False)),
    path("api-auth/", include("rest_framework.urls")),
]

handler400 = "core.views.json_bad_request"
handler404 = "core.views.json_not_found"
handler500 = "core.views.json_server_error"
