"""`Any` only where a third-party type forces it: every use outside an import says why on its line."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("firmware", "fleet", "provisioning")


def any_uses(source: str) -> list[int]:
    """Line numbers where `Any` (or `typing.Any`) is used, imports excluded."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id == "Any":
            lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == "Any":
            lines.append(node.lineno)
    return sorted(set(lines))


def unexplained(source: str) -> list[int]:
    text = source.splitlines()
    return [n for n in any_uses(source) if "# Any:" not in text[n - 1]]


def test_the_check_finds_an_unexplained_any() -> None:
    source = ("from typing import Any\n"
              "def f(x: Any) -> int: ...\n"
              "port: Any = None  # Any: pyserial ships no types\n")
    assert unexplained(source) == [2]
    assert any_uses("import typing\nz: typing.Any = 1\n") == [2]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_any_says_which_third_party_type_forces_it(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line in unexplained(path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == [], ("Any without a '# Any: <third-party reason>' comment; use a precise "
                             "type, or firmware.protocol.decoded.Decoded for decoded data: "
                             + ", ".join(offenders))
