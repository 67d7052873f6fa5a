"""Event log and uploader benchmark: durable signed appends/s, loopback upload rate, 100k drain.

Usage: .venv/bin/python bench/eventlog.py [--appends 2000] [--events 100000] [--no-postgres]
The last printed line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import requests  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from firmware.eventlog import EventLog  # noqa: E402
from firmware.eventlog.log import Durability  # noqa: E402
from firmware.sync.trustsync import register_device  # noqa: E402
from firmware.sync.uploader import DEFAULT_BATCH_SIZE, Uploader  # noqa: E402

DEVICE = "kiosk-bench"
# What the kiosk appends for one decision (pseudonym and face scores, no personal data).
BODY = {"decision": "granted", "reason": None, "format": "dcc", "pseudonym": "ab" * 16,
        "face": {"score": 0.8312, "liveness": 0.9731, "quality": 0.88}}


def bench_appends(folder: Path, count: int, durability: Durability) -> dict[str, float]:
    key = Ed25519PrivateKey.generate()
    latencies = []
    with EventLog.open(folder / f"appends-{durability}.db", key, DEVICE,
                       durability=durability) as log:
        for _ in range(20):  # warm-up: file creation, first pages
            log.append("decision", BODY)
        start = time.perf_counter()
        for _ in range(count):
            before = time.perf_counter()
            log.append("decision", BODY)
            latencies.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"per_s": count / elapsed, "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3}


class TimedSession(requests.Session):
    """Counts the time spent waiting for the server, to separate kiosk-side cost."""

    waited_s = 0.0

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        start = time.perf_counter()
        try:
            return super().post(*args, **kwargs)
        finally:
            self.waited_s += time.perf_counter() - start


def fsync_rate(folder: Path, count: int = 200) -> float:
    """Raw 4 KiB write+fsync rate of the disk under `folder`: the ceiling for FULL appends."""
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        return count / (time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()


def seed(path: Path, key: Ed25519PrivateKey, count: int) -> EventLog:
    """A kiosk that was offline for a long time: `count` real signed events waiting.
    Seeded with synchronous=NORMAL to save minutes; the drain then reopens it as the kiosk
    does (FULL)."""
    with EventLog.open(path, key, DEVICE, durability="normal") as log:
        for _ in range(count):
            log.append("decision", BODY)
    return EventLog.open(path, key, DEVICE)


def drain(db_url: str, folder: Path, count: int, batch_size: int) -> dict[str, float]:
    from fleet.server import run_in_thread  # the fleet helper's server

    key = Ed25519PrivateKey.generate()
    started = time.perf_counter()
    log = seed(folder / f"drain-{secrets.token_hex(4)}.db", key, count)
    seed_s = time.perf_counter() - started
    server = run_in_thread(db_url)
    try:
        token = secrets.token_urlsafe(16)
        server.store.add_token(token, datetime.now(timezone.utc) + timedelta(hours=1))
        register_device(server.url, token, DEVICE, key)
        session = TimedSession()
        uploader = Uploader(log, server.url, DEVICE, key, batch_size=batch_size, timeout_s=60,
                            session=session)
        start = time.perf_counter()
        batches = 0
        while uploader.upload_once():
            batches += 1
        elapsed = time.perf_counter() - start
        stored = len(server.store.events(DEVICE))
        if stored != count or log.pending_count():
            raise SystemExit(f"drain incomplete: server holds {stored} of {count}")
    finally:
        server.stop()
        log.close()
    kiosk_side_s = elapsed - session.waited_s
    return {"seconds": elapsed, "events_per_s": count / elapsed, "batches": batches,
            "seed_s": seed_s, "kiosk_events_per_s": count / kiosk_side_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--events", type=int, default=100_000, help="backlog to drain")
    parser.add_argument("--pg-events", type=int, default=20_000,
                        help="backlog drained into a PostgreSQL-backed server")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="hg-bench-eventlog-") as tmp:
        folder = Path(tmp)
        figures["fsync_per_s"] = round(fsync_rate(folder))
        print(f"raw fsync: {figures['fsync_per_s']}/s", flush=True)
        for durability in ("full", "normal"):
            result = bench_appends(folder, args.appends, durability)
            print(f"appends ({durability}): {result['per_s']:.0f}/s, p50 "
                  f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms", flush=True)
            suffix = "" if durability == "full" else "_normal"
            figures[f"appends_per_s{suffix}"] = round(result["per_s"])
            figures[f"append_p50_ms{suffix}"] = round(result["p50_ms"], 3)
            figures[f"append_p99_ms{suffix}"] = round(result["p99_ms"], 3)
        result = drain(str(folder / "fleet.db"), folder, args.events, args.batch_size)
        print(f"drain {args.events} via SQLite fleet server: {result['seconds']:.1f} s "
              f"({result['events_per_s']:.0f} events/s, {result['batches']} batches of "
              f"{args.batch_size}; seeding took {result['seed_s']:.1f} s)", flush=True)
        print(f"  kiosk side alone (read, encode, sign, record acks): "
              f"{result['kiosk_events_per_s']:.0f} events/s", flush=True)
        figures["upload_events_per_s"] = round(result["events_per_s"])
        figures["uploader_kiosk_side_events_per_s"] = round(result["kiosk_events_per_s"])
        figures[f"drain_{args.events // 1000}k_s"] = round(result["seconds"], 2)
        figures["batch_size"] = args.batch_size
        if not args.no_postgres:
            figures.update(postgres_drain(folder, args.pg_events, args.batch_size))
        figures["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(figures))
    return 0


def postgres_drain(folder: Path, count: int, batch_size: int) -> dict[str, Any]:
    try:
        from fleet.pgtemp import PostgresUnavailable, TemporaryPostgres
    except ImportError as exc:
        print(f"postgres: skipped ({exc})", flush=True)
        return {"upload_events_per_s_postgres": None}
    try:
        with TemporaryPostgres(durable=True) as postgres:
            result = drain(postgres.create_database("bench"), folder, count, batch_size)
    except PostgresUnavailable as exc:
        print(f"postgres: skipped ({exc})", flush=True)
        return {"upload_events_per_s_postgres": None}
    print(f"drain {count} via PostgreSQL fleet server (durable): {result['seconds']:.1f} s "
          f"({result['events_per_s']:.0f} events/s)", flush=True)
    return {"upload_events_per_s_postgres": round(result["events_per_s"]),
            "postgres_events": count}


if __name__ == "__main__":
    raise SystemExit(main())
