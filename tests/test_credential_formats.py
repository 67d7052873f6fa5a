"""Credential formats are equal plug-ins, and no verifier module imports an issuer or signs."""
from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from firmware.credentials import TrustStore, containers, detect_format, verify
from firmware.credentials.formats import CredentialFormat, format_for, registered
from firmware.credentials.store import load_trust_dir
from firmware.demo import issuer as dcc_issuer
from firmware.demo.issuers import nzcp, shc, status

CREDENTIALS = Path(__file__).resolve().parent.parent / "firmware" / "credentials"
FORMAT_PACKAGES = ("dcc", "shc", "nzcp", "status")


def test_every_format_is_registered_with_the_same_interface() -> None:
    formats = registered()
    assert [fmt.name for fmt in formats] == list(FORMAT_PACKAGES)
    prefixes = [prefix for fmt in formats for prefix in fmt.prefixes]
    assert prefixes == ["HC1:", "SHC:/", "NZCP:/", "HG1:"] and len(set(prefixes)) == len(prefixes)
    for fmt in formats:
        assert isinstance(fmt, CredentialFormat)
        package = __import__(f"firmware.credentials.{fmt.name}", fromlist=["FORMAT"])
        assert package.FORMAT is fmt and package.PREFIX.upper() in fmt.prefixes
        assert package.load_into is fmt.load_trust


@pytest.mark.parametrize("text, name", [
    ("HC1:NCF", "dcc"), ("hc1:NCF", "dcc"), ("shc:/56", "shc"), ("SHC:/56", "shc"),
    ("NZCP:/1/2K", "nzcp"), ("nzcp:/1/2K", "nzcp"), ("HG1:6B", "status"),
    ("HC2:NCF", "unknown"), ("", "unknown"), ("shc:", "unknown"),
])
def test_the_prefix_picks_the_format(text: str, name: str) -> None:
    assert detect_format(text) == name
    fmt = format_for(text)
    assert (fmt.name if fmt else "unknown") == name
    if fmt is not None:  # `healthgate check` takes such an argument as credential text
        assert containers.looks_like_credential(text)


def _dcc_samples() -> list[tuple[str, TrustStore, datetime]]:
    at = datetime(2026, 7, 1, tzinfo=timezone.utc)
    signer = dcc_issuer.make_signer(valid_from=at - timedelta(days=30))
    text = dcc_issuer.issue_dcc(signer, dcc_issuer.vaccination_payload(), at - timedelta(days=1),
                                at + timedelta(days=365))
    return [(text, TrustStore.from_certificates([signer.certificate_der]), at)]


def test_verify_dispatches_every_format_through_the_registry() -> None:
    samples = _dcc_samples() + shc.bench_samples() + nzcp.bench_samples() + status.bench_samples()
    for text, trust, at in samples:
        verdict = verify(text, trust, at)
        assert verdict.valid, (verdict.format, verdict.failure)
        fmt = format_for(text)
        assert fmt is not None and verdict.format == fmt.name
        # The same text against the empty store: that format's own deny, never another's.
        denied = verify(text, TrustStore(), at + timedelta(seconds=1))
        assert not denied.valid and denied.format == fmt.name
        assert denied.failure is not None and denied.failure.startswith(
            {"dcc": "DCC_", "shc": "SHC_", "nzcp": "NZCP_", "status": "STATUS_"}[fmt.name])
    unknown = verify("XYZ:not a credential", TrustStore(), samples[0][2])
    assert (unknown.format, unknown.failure) == ("unknown", "UNKNOWN_FORMAT")


def test_a_trust_folder_loads_each_format_and_one_failure_spares_the_others(
        tmp_path: Path) -> None:
    (tmp_path / "nzcp-issuers.json").write_text('{"trusted_issuers": "not a list"}')
    (tmp_path / "status-issuers.json").write_text('{"keys": []}')
    store = load_trust_dir(tmp_path)
    assert store.nzcp is None and store.shc is None  # no SHC files: trust none
    assert store.status is not None and store.status.keys == {}
    assert any(p.startswith("nzcp: trust not loaded") for p in store.problems), store.problems


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_no_verifier_module_imports_an_issuer() -> None:
    """Issuers (signing keys, sample credentials) live in firmware/demo/issuers; every module of
    firmware/credentials must verify without them, lazily imported or not."""
    offenders = []
    modules = sorted(CREDENTIALS.rglob("*.py"))
    assert len(modules) > 40  # the walk sees the whole tree
    for path in modules:
        for name in _imports(ast.parse(path.read_text("utf-8"), str(path))):
            if name == "firmware.demo" or name.startswith(("firmware.demo.", "issuers")):
                offenders.append(f"{path.relative_to(CREDENTIALS)}: {name}")
    assert offenders == []


def test_no_verifier_module_signs() -> None:
    """Nothing in firmware/credentials issues or signs: no issuing function, no call of a key's
    `sign`, no private-key type (signing lives in firmware/demo/issuers)."""
    found = []
    for path in sorted(CREDENTIALS.rglob("*.py")):
        where = path.relative_to(CREDENTIALS)
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    node.name == "sign" or node.name.startswith(
                        ("issue", "sign_", "sign1", "encode_sign1", "es256_sign", "bench_samples",
                         "sample", "new_issuer"))):
                found.append(f"{where}: def {node.name}")
            elif isinstance(node, ast.Attribute) and (
                    node.attr == "sign" or "PrivateKey" in node.attr
                    or node.attr == "generate_private_key"):
                found.append(f"{where}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.Name) and "PrivateKey" in node.id:
                found.append(f"{where}:{node.lineno}: {node.id}")
    assert found == []
