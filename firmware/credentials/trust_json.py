"""Reads SHC/NZCP/status trust files: raw JSON or the content of a fleet envelope, and their sync time."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from firmware.protocol import finite_json
from firmware.protocol.decoded import Decoded
from firmware.protocol.envelope import PinnedKeys
from firmware.protocol.numericdate import NumericDateError, iso_time
from firmware.statefolder import StateFolder

# Written by the trust sync client next to the items: {"items": {name: {"checked_at": ...}}}.
SYNC_STATE_FILE = StateFolder.TRUST_SYNC_STATE
_ENVELOPE_KEYS = {"name", "content", "sig"}


class TrustFileError(ValueError):
    """A trust file that is not JSON (the message names the file)."""


def read_document(path: Path) -> Decoded:
    """The whole JSON document of a trust file."""
    return _parse_json(path, path.read_bytes())


def _parse_json(path: Path, raw: bytes) -> Decoded:
    try:
        return finite_json.loads(raw)  # no NaN/Infinity literals, no 1e400
    except ValueError as exc:
        raise TrustFileError(f"{path.name}: not valid JSON ({exc})") from None


def is_envelope(document: Decoded) -> bool:
    """Whether a document is a fleet envelope ({"name","version","issued_at","key_id","content","sig"})."""
    return isinstance(document, dict) and _ENVELOPE_KEYS <= document.keys()


def read_trust_json(path: Path, pinned_keys: PinnedKeys = None) -> Decoded:
    """A trust file's content: the file itself, or the `content` of a fleet envelope.

    An envelope is checked against `pinned_keys` every time it is read (the sync client checked
    it before writing, but the file may have been swapped since), and refused without them.
    """
    return trust_content(path, _read_bytes(path), pinned_keys)


def trust_content(path: Path, raw: bytes, pinned_keys: PinnedKeys) -> Decoded:
    """The content of trust file `path` whose bytes are `raw`: the JSON document itself, or the
    `content` of a fleet envelope once `check_envelope` has passed it."""
    document = _parse_json(path, raw)
    if not is_envelope(document):
        return document
    check_envelope(path, raw, pinned_keys)
    return document["content"]


def check_envelope(path: Path, raw: bytes, pinned_keys: PinnedKeys) -> None:
    """Raise TrustFileError unless `raw` is an envelope for item `path.stem` signed by a pinned
    fleet key. Without pinned keys an envelope means nothing, so it is refused."""
    if not pinned_keys:
        raise TrustFileError(f"{path.name}: fleet envelope, but no pinned fleet key to check it "
                             "against (provision the kiosk's fleet key)")
    from firmware.protocol.envelope import EnvelopeError, verify_envelope
    try:
        verify_envelope(raw, list(pinned_keys), expected_name=path.stem)
    except EnvelopeError as exc:
        raise TrustFileError(f"{path.name}: fleet envelope rejected ({exc})") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TrustFileError(f"{path.name}: cannot be read ({exc.strerror})") from None


def synced_at(directory: Path, name: str) -> datetime | None:
    """When the fleet last confirmed item `name` (trust-state.json), else the envelope's issue time,
    else the file's modification time; None when there is no such file."""
    path = directory / f"{name}.json"
    if not path.is_file():
        return None
    try:
        state = finite_json.loads((directory / SYNC_STATE_FILE).read_bytes())
        stamp = _parse(state["items"][name]["checked_at"])
        if stamp is not None:
            return stamp
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        document = read_document(path)
    except TrustFileError:
        document = None
    if is_envelope(document):
        stamp = _parse(document.get("issued_at"))
        if stamp is not None:
            return stamp
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)


def _parse(value: Decoded) -> datetime | None:
    try:
        return iso_time(value, "sync time")  # text, ISO 8601, within 1970..9999
    except NumericDateError:
        return None
