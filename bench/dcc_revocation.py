"""DCC revocation lookup at scale: build, save, memory-map and query N revoked-hash entries.

    .venv/bin/python bench/dcc_revocation.py [--entries 20000000]
Last line: one JSON object (build seconds, lookups per second in RAM and memory-mapped).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware.credentials.dcc.revocation import RevocationList  # noqa: E402


def _lookups_per_s(revs: RevocationList, probes: list[bytes]) -> float:
    start = time.perf_counter()
    hits = sum(revs.contains("UCI", p) for p in probes)
    elapsed = time.perf_counter() - start
    assert hits >= len(probes) // 2, "half the probes are listed entries"
    return len(probes) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000_000)
    parser.add_argument("--probes", type=int, default=20_000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=(args.entries, 16), dtype=np.uint8)
    start = time.perf_counter()
    revs = RevocationList.from_arrays({"UCI": raw})
    build_s = time.perf_counter() - start
    listed = [raw[i].tobytes() for i in rng.integers(0, args.entries, args.probes // 2)]
    absent = [rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for _ in range(args.probes // 2)]
    probes = listed + absent
    in_ram = _lookups_per_s(revs, probes)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        revs.save(Path(folder))
        save_s = time.perf_counter() - start
        start = time.perf_counter()
        mapped = RevocationList.load(Path(folder))
        load_s = time.perf_counter() - start
        in_mmap = _lookups_per_s(mapped, probes)
    figures = {"entries": args.entries, "build_s": round(build_s, 2), "save_s": round(save_s, 2),
               "mmap_load_s": round(load_s, 4), "lookups_per_s_ram": round(in_ram),
               "lookups_per_s_mmap": round(in_mmap), "bytes_per_entry": 16}
    print(f"{args.entries:,} entries: build {build_s:.1f} s, mmap load {load_s * 1000:.1f} ms, "
          f"{in_ram:,.0f} lookups/s in RAM, {in_mmap:,.0f} lookups/s memory-mapped")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
