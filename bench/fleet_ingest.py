"""Fleet server ingest rate over loopback HTTP, SQLite and (where installed) PostgreSQL.

Events are signed before the clock starts; what is timed is the full path a kiosk upload takes:
HTTP, request-signature check, per-event signature and chain checks, durable commit, answer.
Last printed line: one JSON object of figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware.sync.trustsync import register_device  # noqa: E402
from fleet.devclient import make_chain, upload  # noqa: E402
from fleet.pgtemp import PostgresUnavailable, TemporaryPostgres  # noqa: E402
from fleet.server import run_in_thread  # noqa: E402


def measure(db_url: str, devices: int, events_per_device: int, batch: int) -> dict[str, float]:
    """Upload every device's chain in batches, one client thread per device."""
    keys = [Ed25519PrivateKey.generate() for _ in range(devices)]
    chains = [make_chain(key, f"bench-{n}", events_per_device) for n, key in enumerate(keys)]
    with run_in_thread(db_url) as server:
        for n, key in enumerate(keys):
            token = f"bench-token-{n:08d}-xxxx"
            server.store.add_token(token, datetime.now(timezone.utc) + timedelta(hours=1))
            register_device(server.url, token, f"bench-{n}", key)
        errors: list[str] = []

        def send(n: int) -> None:
            with requests.Session() as http:
                for start in range(0, events_per_device, batch):
                    answer = upload(http, server.url, keys[n], f"bench-{n}",
                                    chains[n][start:start + batch], timeout_s=60)
                    if answer["rejected"]:
                        errors.append(str(answer["rejected"][:1]))

        threads = [threading.Thread(target=send, args=(n,)) for n in range(devices)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        elapsed = time.perf_counter() - began
        stored = sum(len(server.store.events(f"bench-{n}")) for n in range(devices))
        # Re-sending everything: the duplicate path (acknowledged, nothing written).
        began = time.perf_counter()
        with requests.Session() as http:
            for start in range(0, events_per_device, batch):
                upload(http, server.url, keys[0], "bench-0", chains[0][start:start + batch],
                       timeout_s=60)
        duplicate_elapsed = time.perf_counter() - began
    total = devices * events_per_device
    if errors or stored != total:
        raise SystemExit(f"bench invalid: stored {stored} of {total}, rejections {errors[:3]}")
    return {"events_per_s": round(total / elapsed, 1),
            "duplicates_per_s": round(events_per_device / duplicate_elapsed, 1)}


def verify_cost_us(rounds: int = 500) -> float:
    """Microseconds per Ed25519 verification on this machine: the dominant cost of ingest."""
    key = Ed25519PrivateKey.generate()
    message = b"x" * 300
    signature, public = key.sign(message), key.public_key()
    began = time.perf_counter()
    for _ in range(rounds):
        public.verify(signature, message)
    return round((time.perf_counter() - began) / rounds * 1e6, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000, help="events per device")
    parser.add_argument("--devices", type=int, default=2, help="concurrent uploading devices")
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    figures: dict[str, object] = {"events_per_device": args.events, "devices": args.devices,
                                  "batch": args.batch, "ed25519_verify_us": verify_cost_us()}
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as folder:
        sqlite = measure(f"sqlite:///{folder}/fleet.db", args.devices, args.events, args.batch)
    print(f"SQLite (WAL, synchronous=FULL): {sqlite['events_per_s']} events/s ingested, "
          f"{sqlite['duplicates_per_s']} duplicates/s")
    figures["sqlite_events_per_s"] = sqlite["events_per_s"]
    figures["sqlite_duplicates_per_s"] = sqlite["duplicates_per_s"]
    try:
        with TemporaryPostgres(durable=True) as postgres:
            pg = measure(postgres.create_database("bench"), args.devices, args.events,
                         args.batch)
        print(f"PostgreSQL (fsync on): {pg['events_per_s']} events/s ingested, "
              f"{pg['duplicates_per_s']} duplicates/s")
        figures["postgresql_events_per_s"] = pg["events_per_s"]
        figures["postgresql_duplicates_per_s"] = pg["duplicates_per_s"]
    except PostgresUnavailable as error:
        print(f"PostgreSQL skipped: {error}")
        figures["postgresql_events_per_s"] = None
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
