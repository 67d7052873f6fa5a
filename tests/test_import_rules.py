"""The import rules of the kiosk and the fleet (issue 10), read from the AST of every module."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (folder under the repo root whose modules the rule covers, forbidden module, why)
RULES = [
    ("firmware", "provisioning", "the kiosk never needs the technician tool (state folder: "
                                 "firmware/statefolder.py)"),
    ("firmware/credentials", "firmware.sync", "the wire formats credentials need are in "
                                              "firmware/protocol"),
    ("firmware/vision", "tflite_models", "models are found by path (firmware/vision/modeldir.py), "
                                         "not by importing the build package"),
    ("firmware/protocol", "firmware", "the protocol package, shared with the fleet, stands "
                                      "alone (only firmware.protocol itself)"),
] + [
    (folder, "firmware.kiosk", "the parts the kiosk loop drives never import the loop (the "
                               "dependency runs one way: firmware/kiosk uses them)")
    for folder in ("firmware/credentials", "firmware/vision", "firmware/camera", "firmware/codes",
                   "firmware/display", "firmware/eventlog", "firmware/sync")
] + [
    ("fleet", "firmware.sync", "the fleet shares the wire formats through firmware/protocol"),
    ("fleet", "firmware.eventlog", "the fleet shares the event codec through firmware/protocol"),
]


def imported_modules(source: str) -> list[tuple[int, str]]:
    """Every absolute module a source names in `import`, `from ... import` (with the names
    imported from it, which may be submodules) or importlib.import_module/__import__ with a
    literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(folder: Path, forbidden: str) -> list[str]:
    broken = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imported_modules(path.read_text(encoding="utf-8")):
            if forbidden == "firmware" and within(module, "firmware.protocol"):
                continue  # the protocol package may import itself
            if within(module, forbidden):
                broken.append(f"{path.relative_to(folder)}:{line} imports {module}")
    return broken


@pytest.mark.parametrize("folder, forbidden, why", RULES, ids=[r[0] + "-" + r[1] for r in RULES])
def test_the_kiosk_keeps_its_import_rules(folder: str, forbidden: str, why: str) -> None:
    root = ROOT / folder
    assert any(root.rglob("*.py")), f"no modules under {folder}: the rule would check nothing"
    assert violations(root, forbidden) == [], f"{folder} must not import {forbidden}: {why}"


def test_the_rule_check_finds_each_form_of_import(tmp_path: Path) -> None:
    """The check is not vacuous: every way of importing a module is caught."""
    (tmp_path / "a.py").write_text("import provisioning.cli\n")
    (tmp_path / "b.py").write_text("from provisioning import cli\n")
    (tmp_path / "c.py").write_text("def f():\n    from provisioning.cli import main\n")
    (tmp_path / "d.py").write_text("import importlib\nimportlib.import_module('provisioning')\n")
    (tmp_path / "e.py").write_text("from firmware import sync\n")
    (tmp_path / "f.py").write_text("import provisioning_extras\nfrom firmware.syncing import x\n")
    found = violations(tmp_path, "provisioning")
    assert [entry.split(":")[0] for entry in found] == \
        ["a.py", "b.py", "b.py", "c.py", "c.py", "d.py"]
    assert len(violations(tmp_path, "firmware.sync")) == 1  # e.py; not firmware.syncing
