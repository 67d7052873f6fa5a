"""The status in the Prometheus text format (prometheus-client), from the collector's data."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from firmware.kiosk.states import State
from firmware.protocol.decoded import Decoded

PREFIX = "healthgate_kiosk"


class _StatusMetrics:
    """A custom collector: every scrape reads the (cached) status; nothing is kept here."""

    def __init__(self, current: Callable[[], dict[str, Decoded]]) -> None:
        self._current = current

    def collect(self) -> Iterator[Metric]:
        s = self._current()
        state = GaugeMetricFamily(f"{PREFIX}_state", "1 for the current state", labels=["state"])
        for candidate in State:
            state.add_metric([candidate.value], 1.0 if s["state"] == candidate.value else 0.0)
        yield state
        faults = GaugeMetricFamily(f"{PREFIX}_fault", "1 while a part's fault is latched",
                                   labels=["part"])
        workers = s.get("workers") or {}
        for part in ("camera", "display", "eventlog", *workers):  # and each supervised thread
            faults.add_metric([part], 1.0 if part in s["faults"] else 0.0)
        yield faults
        restarts = GaugeMetricFamily(f"{PREFIX}_worker_restarts",
                                     "restarts of each supervised thread since start",
                                     labels=["worker"])
        for part, worker in workers.items():
            restarts.add_metric([part], float(worker["restarts"]))
        yield restarts
        # counts of today (they restart at midnight UTC): a gauge, not a counter
        decisions = GaugeMetricFamily(f"{PREFIX}_decisions_today", "decisions today by outcome",
                                      labels=["outcome"])
        for outcome in ("granted", "denied"):
            decisions.add_metric([outcome], float(s["today"]["decisions"].get(outcome, 0)))
        yield decisions
        reasons = GaugeMetricFamily(f"{PREFIX}_denials_today", "denials today by reason code",
                                    labels=["reason"])
        for reason, count in s["today"]["reasons"].items():
            reasons.add_metric([reason], float(count))
        yield reasons
        camera = s["camera"]
        yield _gauge("camera_frames", "frames read since start", camera["frames"])
        yield _gauge("camera_dropped_frames", "stale frames dropped since start",
                     camera["dropped_frames"])
        yield from _optional("camera_fps", "frames per second, recent", camera["fps"])
        display = s.get("display") or {}
        yield from _optional("display_round_trip_seconds", "last display request to its ACK",
                             None if display.get("round_trip_ms") is None
                             else display["round_trip_ms"] / 1000.0)
        yield from _optional("display_retransmits", "display frames sent again since start",
                             display.get("retransmits"))
        eventlog = s.get("eventlog") or {}
        yield from _optional("eventlog_events", "events held in the log", eventlog.get("events"))
        yield from _optional("eventlog_pending", "events waiting for upload",
                             eventlog.get("pending"))
        yield from _optional("eventlog_used_bytes", "bytes used by the log",
                             eventlog.get("used_bytes"))
        yield from _optional("eventlog_quota_bytes", "the log's quota", eventlog.get("quota_bytes"))
        trust = s.get("trust") or {}
        ages = GaugeMetricFamily(f"{PREFIX}_trust_age_seconds",
                                 "time since the fleet last confirmed each trust item",
                                 labels=["kind"])
        for kind, item in (trust.get("items") or {}).items():
            if item.get("age_s") is not None:
                ages.add_metric([kind], float(item["age_s"]))
        yield ages
        clock = s.get("clock") or {}
        if clock:
            yield _gauge("clock_trusted", "1 when the clock may be used for validity checks",
                         1.0 if clock.get("trusted") else 0.0)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=float(value))


def _optional(name: str, doc: str, value: float | None) -> Iterator[GaugeMetricFamily]:
    if value is not None:
        yield _gauge(name, doc, value)


def metrics_text(current: Callable[[], dict[str, Decoded]]) -> bytes:
    """One scrape: a registry of its own, so the process's default one is never touched."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusMetrics(current))  # type: ignore[arg-type]
    return generate_latest(registry)
