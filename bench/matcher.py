"""Benchmark 1:N identification: one matrix-vector product over N templates (last line JSON)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from firmware.vision.matcher import Gallery


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def bench(n: int, dim: int, probes: int, top_k: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rows = _unit_rows(rng, n, dim)
    gallery = Gallery(dim=dim, capacity=n)
    start = time.perf_counter()
    gallery.add_many((f"member-{i}", rows[i]) for i in range(n))
    load_s = time.perf_counter() - start
    # probes near real members, so the search has a true answer to find
    targets = rng.integers(0, n, probes)
    queries = rows[targets] + 0.05 * rng.standard_normal((probes, dim), dtype=np.float32)
    for q in queries[:5]:  # warm caches
        gallery.identify(q, top_k)
    times = []
    correct = 0
    for target, q in zip(targets, queries):
        t0 = time.perf_counter()
        result = gallery.identify(q, top_k)
        times.append(time.perf_counter() - t0)
        correct += result[0][0] == f"member-{target}"
    ms = np.array(times) * 1000.0
    return {
        "n": n,
        "dim": dim,
        "top_k": top_k,
        "ms_min": round(float(ms.min()), 3),
        "ms_p50": round(float(np.percentile(ms, 50)), 3),
        "ms_p95": round(float(np.percentile(ms, 95)), 3),
        "top1_correct": correct / probes,
        "load_s": round(load_s, 2),
        "matrix_mb": round(rows.nbytes / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}; load average {os.getloadavg()[0]:.1f} (a shared box inflates p50)")
    results = {}
    for dim in args.dims:
        r = bench(args.n, dim, args.probes, args.top_k)
        print(f"N={r['n']} d={dim} top_k={r['top_k']}: min {r['ms_min']} ms, p50 {r['ms_p50']} ms, p95 {r['ms_p95']} ms, "
              f"top-1 correct {r['top1_correct']:.3f}, matrix {r['matrix_mb']} MB, load {r['load_s']} s")
        results[f"d{dim}"] = r
    summary: dict[str, float] = {"n": args.n, "load_average": round(os.getloadavg()[0], 1)}
    for key, r in results.items():
        summary[f"identify_ms_min_{key}"] = r["ms_min"]
        summary[f"identify_ms_p50_{key}"] = r["ms_p50"]
        summary[f"identify_ms_p95_{key}"] = r["ms_p95"]
        summary[f"top1_correct_{key}"] = r["top1_correct"]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
