"""Fleet dashboard page load times over loopback HTTP with a large fleet (SQLite, PostgreSQL).

The store is filled directly (rows, not signed uploads: ingest speed is bench/fleet_ingest.py):
`--devices` devices with `--events` events in all, and the pre-aggregated tables ingest keeps
(device_status, decision_hours) filled to match. Then each page is fetched `--repeat` times
by a logged-in operator and the median and worst times printed. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware.protocol.timestamps import rfc3339, utc_now  # noqa: E402
from fleet.dashboard.auth import add_operator  # noqa: E402
from fleet.pgtemp import PostgresUnavailable, TemporaryPostgres  # noqa: E402
from fleet.server import run_in_thread  # noqa: E402

PASSWORD = "bench password 123"
INSERT_CHUNK = 20_000
BODY = '{"decision":"granted","format":"dcc","reason":null}'


def fill(store: object, devices: int, events: int) -> None:
    """Devices, raw event rows (spread over the last 30 days), and their aggregates."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    per_device = max(events // devices, 1)
    step = timedelta(days=30) / per_device
    db = store.db  # type: ignore[attr-defined]
    with db.transaction() as tx:
        tx.executemany("INSERT INTO devices (device_id, public_key, registered_at) VALUES (?, ?, ?)",
                       [(f"kiosk-{n:05d}", "AAAA", rfc3339(now)) for n in range(devices)])
    for n in range(devices):
        device = f"kiosk-{n:05d}"
        rows: list[tuple[object, ...]] = []
        hours: dict[str, int] = {}
        for seq in range(1, per_device + 1):
            ts = now - timedelta(days=30) + step * seq
            text = ts.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            rows.append((device, seq, text, "decision", BODY, "0" * 64, f"{seq:064x}", "sig", text))
            hours[text[:13]] = hours.get(text[:13], 0) + 1
        with db.transaction() as tx:
            for start in range(0, len(rows), INSERT_CHUNK):
                tx.executemany("INSERT INTO events (device_id, seq, ts, kind, body, prev_hash, hash, "
                               "sig, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               rows[start:start + INSERT_CHUNK])
            tx.execute("INSERT INTO device_status (device_id, last_seen, last_event_ts, events, "
                       "min_seq, max_seq, parts, firmware) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (device, rows[-1][2], rows[-1][2], per_device, 1, per_device,
                        '{"camera": {"seq": 1, "fault": %s, "problem": "x"}}'
                        % ("true" if n % 10 == 0 else "false"), "0.1.0"))
            tx.executemany("INSERT INTO decision_hours (device_id, hour, decision, reason, count) "
                           "VALUES (?, ?, 'granted', '', ?)", [(device, h, c) for h, c in hours.items()])


def time_pages(url: str, paths: list[str], repeat: int) -> dict[str, dict[str, float]]:
    session = requests.Session()
    session.post(url + "/dashboard/login", data={"name": "bench", "password": PASSWORD}, timeout=30)
    figures = {}
    for path in paths:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            answer = session.get(url + path, timeout=120)
            times.append((time.perf_counter() - start) * 1000.0)
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {answer.status_code}")
        figures[path] = {"median_ms": round(statistics.median(times), 1),
                         "max_ms": round(max(times), 1)}
    return figures


def run(db_url: str, devices: int, events: int, repeat: int) -> dict[str, object]:
    with run_in_thread(db_url) as server:
        add_operator(server.store, "bench", PASSWORD, rfc3339(utc_now()))
        start = time.perf_counter()
        fill(server.store, devices, events)
        print(f"  filled {devices} devices, {events} events in {time.perf_counter() - start:.0f} s")
        paths = ["/dashboard/", f"/dashboard/?page_no={devices // 100}",
                 f"/dashboard/devices/kiosk-{devices // 2:05d}", "/metrics"]
        return {"database": server.store.dialect, "pages": time_pages(server.url, paths, repeat)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="events in all (the issue's size is 10000000: a few GB on disk)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="healthgate-bench-") as tmp:
        print("SQLite:")
        results.append(run(f"sqlite:///{tmp}/fleet.db", args.devices, args.events, args.repeat))
        if not args.no_postgres:
            try:
                with TemporaryPostgres() as pg:
                    print("PostgreSQL:")
                    results.append(run(pg.create_database("bench"), args.devices, args.events, args.repeat))
            except PostgresUnavailable as error:
                print(f"PostgreSQL skipped: {error}")
    for result in results:
        for path, figure in result["pages"].items():  # type: ignore[attr-defined]
            print(f"{result['database']:10} {path:40} median {figure['median_ms']:7.1f} ms, "
                  f"worst {figure['max_ms']:7.1f} ms")
    print(json.dumps({"devices": args.devices, "events": args.events, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
