"""`/metrics` of the fleet server (Prometheus text format), computed from the store per scrape."""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.concurrency import run_in_threadpool

from fleet.dashboard.queries import fleet_totals

from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:
    from fleet.storage import Store

PREFIX = "healthgate_fleet"


class _FleetMetrics:
    """Counts come from the database, so every worker process reports the same totals and a
    restart loses nothing; `rate(healthgate_fleet_events_stored_total[5m])` is the ingest rate."""

    def __init__(self, totals: dict[str, Decoded]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        t = self._totals
        yield CounterMetricFamily(f"{PREFIX}_events_stored", "events stored", value=t["events"])
        decisions = CounterMetricFamily(f"{PREFIX}_decisions", "decisions stored by outcome",
                                        labels=["outcome"])
        for outcome, count in sorted(t["decisions"].items()):
            decisions.add_metric([outcome], count)
        yield decisions
        rejects = CounterMetricFamily(f"{PREFIX}_events_rejected",
                                      "events refused (and flagged) by reason", labels=["reason"])
        for reason, count in sorted(t["rejects"].items()):
            rejects.add_metric([reason], count)
        yield rejects
        yield GaugeMetricFamily(f"{PREFIX}_devices_registered", "devices registered",
                                value=t["devices"])
        yield GaugeMetricFamily(f"{PREFIX}_devices_seen", "devices that ever uploaded",
                                value=t["seen"])
        yield GaugeMetricFamily(f"{PREFIX}_devices_seen_recently",
                                "devices that uploaded within the offline threshold",
                                value=t["recent"])


def metrics_router(store: Store) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/metrics")
    async def metrics() -> Response:
        totals = await run_in_threadpool(fleet_totals, store)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_FleetMetrics(totals))  # type: ignore[arg-type]
        return Response(generate_latest(registry),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
