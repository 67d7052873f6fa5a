"""Documentation that others rely on stays true: reason codes, the two commands, CI."""
from __future__ import annotations

import re
from pathlib import Path

from firmware.credentials.reasons import REASONS

ROOT = Path(__file__).resolve().parent.parent


def test_every_reason_code_is_documented_with_its_display_message() -> None:
    table = (ROOT / "docs" / "credentials.md").read_text()
    for code, message in REASONS.items():
        row = re.search(rf"^\| `{code}` \| (.*?) \|", table, re.MULTILINE)
        assert row, f"{code} has no row in docs/credentials.md"
        assert row.group(1) == message, f"{code}: docs say {row.group(1)!r}, code says {message!r}"


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section, re.DOTALL)
    assert [b.strip() for b in blocks] == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines()
                if line.strip() and not line.strip().startswith("#")]
    assert commands[-1] == "make test"
