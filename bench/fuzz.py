"""Coverage-guided fuzzing (atheris/libFuzzer) of every decision-path parser for a fixed number
of inputs; the last line printed is one JSON object (inputs, unique crashes, max RSS delta, max
time per input). A crash is an exception out of a target or a bound exceeded
(tests/fuzz_targets.py). Usage (docs/benchmarks.md):

    nice .venv/bin/python bench/fuzz.py --runs 20000 --seed 1 [--target dcc ...]

Each target runs in its own child process (libFuzzer owns the process it runs in); the budget
is a count of inputs, never a time, so a slow machine runs the same inputs, only later.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# libFuzzer's own run limit sits far above ours: the child stops itself after exactly --runs
# inputs (seeds included) and reports; libFuzzer stopping first would lose the report.
LIBFUZZER_RUNS_FACTOR = 1000
# A single input that raises the peak RSS by more than this is a finding (a bound that should
# have stopped it did not): the largest legitimate allocation is a 64 KiB inflate buffer.
MAX_RSS_GROWTH_PER_INPUT_KIB = 64 * 1024
KEPT_CRASH_INPUT_BYTES = 256  # hex of each unique crash's first input, shortened, in the report


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _signature(target: str, exc: BaseException) -> str:
    """One crash kind: exception type and the innermost frame in our code (or the last one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/firmware/" in f.filename or "/tests/" in f.filename]
    frame = (ours or frames or [None])[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno}" if frame is not None else "?"
    return f"{target}: {type(exc).__name__} at {where}"


def run_child(target_name: str, runs: int, seed: int, report: Path) -> None:
    """Fuzz one target in this process; write the report and exit after `runs` inputs."""
    import atheris

    # Coverage of our own code only (the parsers, the verifiers, the protocol helpers):
    # instrumenting numpy, cryptography and the rest costs far more start-up than it finds.
    # The seeds run inside the block: the verifiers import their modules lazily, at first use.
    with atheris.instrument_imports(include=["firmware", "tests"]):
        from tests.fuzz_targets import MAX_INPUT_BYTES, TARGETS
        target = TARGETS[target_name]
        seeds = target.seeds()
        for data in seeds:  # also warms every cache before the baseline is taken
            target.run(data)
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target_name}-"))
    for index, data in enumerate(seeds):
        (corpus / f"seed-{index:03d}").write_bytes(data)
    state: dict[str, Any] = {"inputs": 0, "crashes": {}, "max_s": 0.0, "rss0": _peak_rss_kib(),
                             "max_growth_kib": 0}

    def finish() -> None:
        result = {"target": target_name, "inputs": state["inputs"],
                  "unique_crashes": len(state["crashes"]), "crashes": state["crashes"],
                  "max_rss_delta_kib": _peak_rss_kib() - state["rss0"],
                  "max_input_rss_growth_kib": state["max_growth_kib"],
                  "max_time_per_input_s": round(state["max_s"], 6)}
        report.write_text(json.dumps(result))
        os._exit(0)  # libFuzzer would keep going; the report is written

    def one_input(data: bytes) -> None:
        before = _peak_rss_kib()
        if state["inputs"] == 0:  # libFuzzer has allocated its own tables by now: baseline
            state["rss0"] = before
        started = time.perf_counter()
        try:
            target.run(data)
        except Exception as exc:  # every exception is a finding, recorded once per kind
            state["crashes"].setdefault(_signature(target_name, exc),
                                        data[:KEPT_CRASH_INPUT_BYTES].hex())
        elapsed = time.perf_counter() - started
        growth = _peak_rss_kib() - before
        state["max_s"] = max(state["max_s"], elapsed)
        state["max_growth_kib"] = max(state["max_growth_kib"], growth)
        if growth > MAX_RSS_GROWTH_PER_INPUT_KIB:
            state["crashes"].setdefault(f"{target_name}: RSS grew {growth} KiB on one input",
                                        data[:KEPT_CRASH_INPUT_BYTES].hex())
        state["inputs"] += 1
        if state["inputs"] >= runs:
            finish()

    atheris.Setup([sys.argv[0], f"-seed={seed}", f"-runs={runs * LIBFUZZER_RUNS_FACTOR}",
                   f"-max_len={MAX_INPUT_BYTES}", "-print_final_stats=0", "-detect_leaks=0",
                   str(corpus)], one_input)
    atheris.Fuzz()
    finish()  # libFuzzer returned early (not expected): report what ran


def run_all(targets: list[str], runs: int, seed: int) -> dict[str, Any]:
    """Each target in a child process; the summary over all of them."""
    results = []
    with tempfile.TemporaryDirectory(prefix="fuzz-report-") as folder:
        for name in targets:
            report = Path(folder) / f"{name}.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--child", name,
                       "--runs", str(runs), "--seed", str(seed), "--report", str(report)]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if report.exists():
                result = json.loads(report.read_text())
            else:  # the child died (a native crash): that is a finding too
                tail = (done.stderr or "").strip().splitlines()[-3:]
                result = {"target": name, "inputs": 0, "unique_crashes": 1,
                          "crashes": {f"{name}: child exited {done.returncode}": " | ".join(tail)},
                          "max_rss_delta_kib": 0, "max_time_per_input_s": 0.0}
            results.append(result)
            print(f"{name:12s} inputs {result['inputs']:7d}  unique crashes "
                  f"{result['unique_crashes']}  max RSS delta {result['max_rss_delta_kib']} KiB  "
                  f"max time/input {result['max_time_per_input_s'] * 1000:.1f} ms", flush=True)
            for kind, example in result["crashes"].items():
                print(f"    {kind}  input {example}", flush=True)
    return {"inputs": sum(r["inputs"] for r in results),
            "unique_crashes": sum(r["unique_crashes"] for r in results),
            "max_rss_delta_kib": max((r["max_rss_delta_kib"] for r in results), default=0),
            "max_time_per_input_s": max((r["max_time_per_input_s"] for r in results), default=0.0),
            "runs_per_target": runs, "seed": seed, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--child" in argv:  # before anything imports firmware: the child instruments it
        child = argparse.ArgumentParser()
        for option in ("--child", "--report"):
            child.add_argument(option, required=True)
        child.add_argument("--runs", type=int, required=True)
        child.add_argument("--seed", type=int, required=True)
        known = child.parse_args(argv)
        run_child(known.child, known.runs, known.seed, Path(known.report))
        return 0
    from tests.fuzz_targets import TARGETS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000,
                        help="inputs per target (seeds included)")
    parser.add_argument("--seed", type=int, default=1,
                        help="libFuzzer seed (deterministic mutation)")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS),
                        help="fuzz only these targets (repeatable; default: all)")
    args = parser.parse_args(argv)
    summary = run_all(args.target or list(TARGETS), args.runs, args.seed)
    print(json.dumps(summary))
    return 1 if summary["unique_crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
