"""The demo as a technician sees it (issue 16): progress as it goes, each rendered screen
labelled with its scenario, and no TensorFlow Lite delegate banner (the real command)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 600.0  # a guard against a hung demo, not a speed claim


def test_demo_shows_progress_labels_screens_and_no_delegate_banner() -> None:
    result = subprocess.run([sys.executable, "-m", "firmware.cli", "demo"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    progress = re.findall(r"^\[(\d+)/(\d+)\] (.+): (GRANTED|DENIED \w+)$", out, re.MULTILINE)
    total = int(progress[0][1])
    assert [int(p[0]) for p in progress] == list(range(1, total + 1))
    assert out.index("[1/") < out.index("decisions:")  # as it goes, before the summary
    # every rendered result screen names the person in front of the kiosk
    for index, (_, _, label, outcome) in enumerate(progress, 1):
        state = outcome.split()[0]
        assert re.search(rf"\+ \w+ {state}  <- {index}/{total} {re.escape(label)}$", out,
                         re.MULTILINE), (index, label)
    assert "Created TensorFlow Lite" not in out + result.stderr
