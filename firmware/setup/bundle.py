"""Offline provisioning bundles: a signed zip of a provisioning code and trust envelopes.

Members: `manifest.json` (canonical JSON {"v": 1, "code": HGP1 text, "members": {name: sha256
hex}}), `manifest.sig` (Ed25519 by the fleet key over b"HGB1:" + manifest) and
`trust/<name>.json` (signed trust envelopes). Checked before anything is unpacked: file size,
member count, names (an allow-list: no paths, no traversal), sizes, then the manifest signature
against the pinned key, then the code inside it (expiry, fingerprint), then each member's
digest and envelope signature. See docs/provisioning.md.
"""
from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.protocol import finite_json
from firmware.protocol.envelope import EnvelopeError, verify_envelope
from firmware.protocol.events import canonical_json
from firmware.setup.code import ProvisionCode, ProvisionCodeError, check_code

SIGNED_PREFIX = b"HGB1:"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
MAX_BUNDLE_BYTES = 128 * 1024 * 1024
MAX_MEMBERS = 34  # manifest, signature and up to 32 trust items
MAX_MANIFEST_BYTES = 16 * 1024
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # as a trust download (trustsync.MAX_ENVELOPE_BYTES)
MAX_TOTAL_BYTES = 256 * 1024 * 1024  # all members unpacked: a zip bomb stops here
TRUST_MEMBER = re.compile(r"trust/([a-z0-9][a-z0-9-]{0,63})\.json")


def _refuse(detail: str) -> ProvisionCodeError:
    return ProvisionCodeError("PROVISION_BUNDLE_INVALID", detail)


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its code and the verified envelopes (name -> raw bytes)."""

    code: ProvisionCode
    envelopes: dict[str, bytes]


def build_bundle(key: Ed25519PrivateKey, code_text: str, envelopes: dict[str, bytes]) -> bytes:
    """The bundle's bytes (the fleet side): `envelopes` maps trust names to envelope bytes."""
    members = {f"trust/{name}.json": raw for name, raw in sorted(envelopes.items())}
    manifest = canonical_json({"v": 1, "code": code_text, "members": {
        name: hashlib.sha256(raw).hexdigest() for name, raw in members.items()}})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, manifest)
        archive.writestr(SIGNATURE, base64.b64encode(key.sign(SIGNED_PREFIX + manifest)))
        for name, raw in members.items():
            archive.writestr(name, raw)
    return out.getvalue()


def check_bundle(path: Path, pinned: Ed25519PublicKey, now: datetime) -> Bundle:
    """The verified bundle at `path`, or ProvisionCodeError (nothing is written anywhere)."""
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise _refuse("file too large")
        with zipfile.ZipFile(path) as archive:
            return _check_archive(archive, pinned, now)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, RuntimeError) as error:
        raise _refuse(f"cannot read the archive: {type(error).__name__}") from None


def _check_archive(archive: zipfile.ZipFile, pinned: Ed25519PublicKey, now: datetime) -> Bundle:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _refuse(f"{len(infos)} members")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise _refuse("a member name repeats")
    for info in infos:  # by name only: paths, '..' and links never match the allow-list
        if info.filename not in (MANIFEST, SIGNATURE) and not TRUST_MEMBER.fullmatch(info.filename):
            raise _refuse(f"unexpected member {info.filename[:80]!r}")
        if info.file_size > MAX_MEMBER_BYTES:
            raise _refuse(f"member {info.filename} too large")
    if sum(info.file_size for info in infos) > MAX_TOTAL_BYTES:
        raise _refuse("members too large together")
    if MANIFEST not in names or SIGNATURE not in names:
        raise _refuse("no signed manifest")
    manifest = _read(archive, MANIFEST, MAX_MANIFEST_BYTES)
    try:
        pinned.verify(base64.b64decode(_read(archive, SIGNATURE, 256), validate=True),
                      SIGNED_PREFIX + manifest)
    except (InvalidSignature, ValueError):
        raise ProvisionCodeError("PROVISION_CODE_FORGED", "bundle not signed by the pinned key") \
            from None
    # Signed by our fleet: only now is the manifest interpreted.
    try:
        fields = finite_json.loads(manifest)
    except ValueError:
        raise _refuse("manifest is not JSON") from None
    listed = fields.get("members") if isinstance(fields, dict) else None
    if not isinstance(fields, dict) or fields.get("v") != 1 or not isinstance(listed, dict) \
            or not isinstance(fields.get("code"), str):
        raise _refuse("manifest fields")
    code = check_code(fields["code"], pinned, now)
    if set(listed) != set(names) - {MANIFEST, SIGNATURE}:
        raise _refuse("members differ from the manifest")
    envelopes = {}
    for name, digest in listed.items():
        raw = _read(archive, name, MAX_MEMBER_BYTES)
        if hashlib.sha256(raw).hexdigest() != digest:
            raise _refuse(f"{name} was changed")
        trust_name = TRUST_MEMBER.fullmatch(name).group(1)  # type: ignore[union-attr]
        try:
            verify_envelope(raw, [pinned], expected_name=trust_name)
        except EnvelopeError as error:
            raise _refuse(f"{name}: {error.code}") from None
        envelopes[trust_name] = raw
    return Bundle(code, envelopes)


def _read(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A member's bytes, never more than `limit` (the header's size may lie)."""
    with archive.open(name) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise _refuse(f"member {name} too large")
    return data
