"""Every benchmark script still starts (imports resolve, arguments parse): they are not run by
the suite (speed is measured, never asserted), so this is what keeps them from rotting."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
# lfw_peer.py runs inside the peer's own virtualenv and takes its input on stdin
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "lfw_peer.py")


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_bench_script_starts(script: Path) -> None:
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                            text=True, timeout=120, cwd=BENCH.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


def test_bench_pad_runs_a_tiny_configuration() -> None:
    """bench/pad.py end to end on 3 LFW images and 1 attack face: the JSON keys it promises."""
    import json

    shared = BENCH.parent.parent / "shared"
    if not (shared / "data" / "lfw-view1").is_dir() or not (shared / "models" / "minifasnet").is_dir():
        pytest.skip("../shared/data/lfw-view1 or ../shared/models/minifasnet missing")
    result = subprocess.run([sys.executable, str(BENCH / "pad.py"), "--limit", "3",
                             "--attack-images", "1"], capture_output=True, text=True,
                            timeout=300, cwd=BENCH.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"bpcer", "apcer_print", "apcer_replay", "ms_per_face", "samples_correct"} <= set(figures)
    assert figures["samples_correct"] is True
