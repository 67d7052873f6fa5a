"""Event log and uploader benchmark: durable signed appends/s, loopback upload rate, 100k drain.

Usage: .venv/bin/python bench/eventlog.py [--appends 2000] [--repeats 3] [--threads 4]
                                          [--events 100000] [--no-postgres] [--no-drain]
The last printed line is one JSON object with every figure. `appends_per_s` is the kiosk's case:
one writer, synchronous=FULL, the median of --repeats runs (best in `appends_per_s_best`), each
run next to a raw fsync probe of the same disk. `group_appends_per_s` is the same FULL log with
--threads writers appending at once (group commit: they share fsyncs).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import requests  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from firmware.eventlog import EventLog  # noqa: E402
from firmware.eventlog.log import Durability  # noqa: E402
from firmware.eventlog.outbox import Outbox  # noqa: E402
from firmware.sync.trustsync import register_device  # noqa: E402
from firmware.sync.uploader import DEFAULT_BATCH_SIZE, Uploader  # noqa: E402

DEVICE = "kiosk-bench"
# What the kiosk appends for one decision (pseudonym and face scores, no personal data).
BODY = {"decision": "granted", "reason": None, "format": "dcc", "pseudonym": "ab" * 16,
        "face": {"score": 0.8312, "liveness": 0.9731, "quality": 0.88}}


def bench_appends(folder: Path, count: int, durability: Durability,
                  threads: int = 1) -> dict[str, float]:
    """`count` appends to a fresh log, from `threads` threads at once (count/threads each)."""
    key = Ed25519PrivateKey.generate()
    latencies: list[float] = []
    name = f"appends-{durability}-{threads}-{secrets.token_hex(4)}.db"
    with EventLog.open(folder / name, key, DEVICE, durability=durability) as log:
        for _ in range(20):  # warm-up: first pages
            log.append("decision", BODY)
        before_batches, before_items = log.commit_counts()

        def writer(share: int) -> None:
            mine = []
            for _ in range(share):
                before = time.perf_counter()
                log.append("decision", BODY)
                mine.append(time.perf_counter() - before)
            latencies.extend(mine)  # list.extend is atomic under the GIL

        shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
        workers = [threading.Thread(target=writer, args=(share,)) for share in shares]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=600)
        elapsed = time.perf_counter() - start
        batches, items = log.commit_counts()
        if len(latencies) != count or not log.verify().ok:
            raise SystemExit(f"append benchmark broken: {len(latencies)} of {count} appends")
    latencies.sort()
    return {"per_s": count / elapsed, "p50_ms": statistics.median(latencies) * 1e3,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
            "mean_batch": (items - before_items) / max(1, batches - before_batches)}


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
    """Raw 4 KiB append + fsync rate of the disk under `folder` (the file grows every time, as
    a WAL that is not reused does)."""
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


def fdatasync_inplace_rate(folder: Path, count: int = 200) -> float:
    """Raw rate of what a FULL commit does now: two 4 KiB frames written over blocks that
    already exist (the preallocated WAL), then fdatasync. The ceiling for one writer."""
    path = folder / "fdatasync-probe"
    frame = 2 * (4096 + 24)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, bytes(frame * count))
        os.fsync(fd)
        start = time.perf_counter()
        for index in range(count):
            os.pwrite(fd, b"x" * frame, index * frame)
            os.fdatasync(fd)
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
        outbox = Outbox(log)
        uploader = Uploader(outbox, server.url, DEVICE, key, batch_size=batch_size, timeout_s=60,
                            session=session)
        start = time.perf_counter()
        batches = 0
        while uploader.upload_once():
            batches += 1
        elapsed = time.perf_counter() - start
        stored = len(server.store.events(DEVICE))
        if stored != count or outbox.pending_count():
            raise SystemExit(f"drain incomplete: server holds {stored} of {count}")
    finally:
        server.stop()
        log.close()
    kiosk_side_s = elapsed - session.waited_s
    return {"seconds": elapsed, "events_per_s": count / elapsed, "batches": batches,
            "seed_s": seed_s, "kiosk_events_per_s": count / kiosk_side_s}


def append_figures(folder: Path, count: int, repeats: int, threads: int) -> dict[str, Any]:
    """Single-writer FULL (the kiosk), group commit FULL, NORMAL, each run `repeats` times in
    turn with the raw disk probes beside them, so every figure saw the same load."""
    runs: dict[str, list[dict[str, float]]] = {"full": [], "group": [], "normal": []}
    fsyncs: list[float] = []
    inplace: list[float] = []
    for repeat in range(repeats):
        fsyncs.append(fsync_rate(folder))
        inplace.append(fdatasync_inplace_rate(folder))
        runs["full"].append(bench_appends(folder, count, "full"))
        runs["group"].append(bench_appends(folder, count, "full", threads))
        runs["normal"].append(bench_appends(folder, count, "normal"))
        print(f"run {repeat + 1}/{repeats} (load {os.getloadavg()[0]:.1f}): raw fsync "
              f"{fsyncs[-1]:.0f}/s, in-place fdatasync {inplace[-1]:.0f}/s; FULL appends "
              f"{runs['full'][-1]['per_s']:.0f}/s (p50 {runs['full'][-1]['p50_ms']:.2f} ms); "
              f"{threads} threads {runs['group'][-1]['per_s']:.0f}/s (mean batch "
              f"{runs['group'][-1]['mean_batch']:.1f}); NORMAL "
              f"{runs['normal'][-1]['per_s']:.0f}/s", flush=True)

    def typical(results: list[dict[str, float]], field: str) -> float:
        return statistics.median(result[field] for result in results)

    figures: dict[str, Any] = {
        "fsync_per_s": round(statistics.median(fsyncs)),
        "fdatasync_inplace_per_s": round(statistics.median(inplace)),
        "append_repeats": repeats,
    }
    for name, suffix in (("full", ""), ("normal", "_normal")):
        figures[f"appends_per_s{suffix}"] = round(typical(runs[name], "per_s"))
        figures[f"append_p50_ms{suffix}"] = round(typical(runs[name], "p50_ms"), 3)
        figures[f"append_p99_ms{suffix}"] = round(typical(runs[name], "p99_ms"), 3)
    figures["appends_per_s_best"] = round(max(r["per_s"] for r in runs["full"]))
    figures["group_threads"] = threads
    figures["group_appends_per_s"] = round(typical(runs["group"], "per_s"))
    figures["group_appends_per_s_best"] = round(max(r["per_s"] for r in runs["group"]))
    figures["group_mean_batch"] = round(typical(runs["group"], "mean_batch"), 2)
    figures["group_append_p50_ms"] = round(typical(runs["group"], "p50_ms"), 3)
    figures["group_append_p99_ms"] = round(typical(runs["group"], "p99_ms"), 3)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=2000, help="appends per measurement")
    parser.add_argument("--repeats", type=int, default=3,
                        help="append measurements in turn; the figures are their medians")
    parser.add_argument("--threads", type=int, default=4,
                        help="concurrent writers for the group-commit figure")
    parser.add_argument("--no-drain", action="store_true",
                        help="append figures only (no upload drains)")
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
        figures.update(append_figures(folder, args.appends, max(1, args.repeats),
                                      max(1, args.threads)))
        print(f"single writer, FULL (the kiosk): {figures['appends_per_s']}/s typical, "
              f"{figures['appends_per_s_best']}/s best; {args.threads} writers with group "
              f"commit: {figures['group_appends_per_s']}/s typical, "
              f"{figures['group_appends_per_s_best']}/s best", flush=True)
        if args.no_drain:
            figures["load_avg_1m_end"] = os.getloadavg()[0]
            print(json.dumps(figures))
            return 0
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
