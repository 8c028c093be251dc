"""`/metrics`' scrape-time gauges of the reply pipeline (`core.metrics` serves them): the
backlog by state and the open breakers, read from `dialogues.selectors_dashboard` and cached
METRICS_SCRAPE_CACHE_S per process, so a scraper cannot load the database."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.caching import LookupCache
from core.metrics import gauge_family
from dialogues.selectors_dashboard import backlog_counts, open_breakers_filter

_scrape_cache = LookupCache(maxsize=16, ttl_s=lambda: settings.METRICS_SCRAPE_CACHE_S)


class BacklogCollector(Collector):
    """`chatbots_backlog{state}`, read when scraped (cached METRICS_SCRAPE_CACHE_S)."""

    def collect(self) -> Iterator[Metric]:
        counts = _scrape_cache.get_or_load("backlog", backlog_counts)
        yield gauge_family("chatbots_backlog", "Messages waiting, by state.", counts, label="state")


class OpenBreakersCollector(Collector):
    """`chatbots_breakers_open`: channels nothing is sent to until their probe."""

    def collect(self) -> Iterator[Metric]:
        count = _scrape_cache.get_or_load("breakers", lambda: {"open": open_breakers_filter().count()})
        family = GaugeMetricFamily("chatbots_breakers_open", "Channels whose circuit breaker is open.")
        family.add_metric([], count["open"])
        yield family


def scrape_collectors() -> list[Collector]:
    return [BacklogCollector(), OpenBreakersCollector()]
