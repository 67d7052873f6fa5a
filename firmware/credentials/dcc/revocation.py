"""DCC revocation lists: the three hash types, and a sorted-array lookup that scales to 10^7+ entries.

Hashes (EU DCC revocation scheme): the first 16 bytes of SHA-256 over
  UCI             the certificate identifier `ci` (UTF-8);
  COUNTRYCODEUCI  the issuing country (CWT `iss`, else the entry's `co`) followed by `ci`;
  SIGNATURE       the COSE signature; for ECDSA (ES256) only its `r` half.
Each type's hashes are held as a (2, N) uint64 table, sorted: row 0 the high 8 bytes, row 1 the
low 8 bytes, each row contiguous. `numpy.searchsorted` on row 0 is O(log n) per lookup at 16
bytes per entry, and the `.npy` file loads memory-mapped, so a list of tens of millions of
entries costs no start-up parse and only the pages a search touches.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from firmware.credentials.cose_sign1 import ALG_ES256, Sign1
from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:  # the pipeline imports this module
    from firmware.credentials.dcc.codec import Claims
    from firmware.credentials.dcc.pipeline import _Run
    from firmware.credentials.trust import TrustStore

HASH_TYPES = ("UCI", "COUNTRYCODEUCI", "SIGNATURE")
HASH_BYTES = 16
_BIG_ENDIAN_HALVES = np.dtype(">u8")


def hash_entry(data: bytes) -> bytes:
    """The revocation entry for `data`: the first 16 bytes of its SHA-256."""
    return hashlib.sha256(data).digest()[:HASH_BYTES]


def dcc_hashes(uvci: str, issuer_country: str, sign1: Sign1) -> dict[str, bytes]:
    """The three revocation hashes of one DCC."""
    signature = sign1.signature
    if sign1.alg == ALG_ES256:
        signature = signature[: len(signature) // 2]  # r only: (r, s') also verifies
    return {
        "UCI": hash_entry(uvci.encode("utf-8")),
        "COUNTRYCODEUCI": hash_entry((issuer_country + uvci).encode("utf-8")),
        "SIGNATURE": hash_entry(signature),
    }


def _table(raw: np.ndarray) -> np.ndarray:
    """A (2, N) native uint64 table, row 0 the high halves and row 1 the low halves, sorted.

    Each row is contiguous, so `searchsorted` works in place (also on a memory map).
    """
    halves = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, HASH_BYTES)
    halves = halves.view(_BIG_ENDIAN_HALVES).astype(np.uint64)  # (N, 2) native
    order = np.lexsort((halves[:, 1], halves[:, 0]))
    return np.ascontiguousarray(halves[order].T)


def _to_array(hashes: Iterable[bytes]) -> np.ndarray:
    raw = b"".join(h[:HASH_BYTES] for h in hashes if len(h) >= HASH_BYTES)
    return _table(np.frombuffer(raw, dtype=np.uint8))


@dataclass
class RevocationList:
    """Sorted hash tables per hash type. Build with `from_hashes`, persist with `save`/`load`."""

    tables: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_hashes(cls, by_type: dict[str, Iterable[bytes]]) -> "RevocationList":
        unknown = set(by_type) - set(HASH_TYPES)
        if unknown:
            raise ValueError(f"unknown revocation hash types: {sorted(unknown)}")
        return cls({kind: _to_array(hashes) for kind, hashes in by_type.items()})

    @classmethod
    def from_arrays(cls, by_type: dict[str, np.ndarray]) -> "RevocationList":
        """From (N, 16) uint8 arrays of hashes (the fast path for lists of millions)."""
        tables = {}
        for kind, array in by_type.items():
            if kind not in HASH_TYPES:
                raise ValueError(f"unknown revocation hash type: {kind}")
            if array.ndim != 2 or array.shape[1] != HASH_BYTES:
                raise ValueError("revocation hashes must be an (N, 16) byte array")
            tables[kind] = _table(array)
        return cls(tables)

    @classmethod
    def from_json(cls, document: Decoded) -> "RevocationList":
        """`{"UCI": [hex or base64 hash, ...], "COUNTRYCODEUCI": [...], "SIGNATURE": [...]}`."""
        if not isinstance(document, dict):
            raise ValueError("a revocation list is a JSON object of hash type -> hashes")
        return cls.from_hashes({kind: [_hash_bytes(h) for h in values]
                                for kind, values in document.items()})

    def __len__(self) -> int:
        return sum(t.shape[1] for t in self.tables.values())

    def contains(self, kind: str, digest: bytes) -> bool:
        table = self.tables.get(kind)
        if table is None or table.shape[1] == 0 or len(digest) < HASH_BYTES:
            return False
        hi = np.uint64(int.from_bytes(digest[:8], "big"))
        lo = int.from_bytes(digest[8:HASH_BYTES], "big")
        his, los = table[0], table[1]
        index = int(his.searchsorted(hi))
        # One binary search, then walk the (almost always length 0 or 1) run of equal high halves.
        while index < his.shape[0] and int(his[index]) == int(hi):
            if int(los[index]) == lo:
                return True
            index += 1
        return False

    def revoked_by(self, hashes: dict[str, bytes]) -> str | None:
        """The first hash type under which the DCC is listed, or None."""
        for kind in HASH_TYPES:
            if kind in hashes and self.contains(kind, hashes[kind]):
                return kind
        return None

    def save(self, folder: Path) -> None:
        """One `<TYPE>.npy` per hash type (written to a temp name, then renamed)."""
        folder.mkdir(parents=True, exist_ok=True)
        for kind, table in self.tables.items():
            temporary = folder / f".{kind}.tmp.npy"
            np.save(temporary, table)
            temporary.replace(folder / f"{kind}.npy")

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> "RevocationList":
        """Load a saved list; memory-mapped by default (pages are read only when searched)."""
        tables = {}
        for kind in HASH_TYPES:
            path = folder / f"{kind}.npy"
            if path.exists():
                table = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
                if table.dtype != np.uint64 or table.ndim != 2 or table.shape[0] != 2:
                    raise ValueError(f"{path}: not a revocation hash table")
                tables[kind] = table
        return cls(tables)


class UnusableRevocation:
    """Stands in for a revocation list that exists but cannot be read: the revocation stage
    then denies every DCC (DCC_REVOCATION_UNAVAILABLE). Its entries name no issuer, so nobody
    can be exempted, and dropping the list would accept revoked certificates."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _hash_bytes(text: Decoded) -> bytes:
    if not isinstance(text, str):
        raise ValueError("revocation hashes are hex or base64 strings")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        import base64
        raw = base64.b64decode(text, validate=True)
    if len(raw) < HASH_BYTES:
        raise ValueError("revocation hash shorter than 16 bytes")
    return raw[:HASH_BYTES]


def run_stage(claims: Claims, sign1: Sign1, trust: TrustStore, uvci: str | None, run: _Run) -> None:
    """Revocation stage: not run (None) when no list is loaded; else listed -> DCC_REVOKED."""
    revocations = getattr(trust, "dcc_revocation", None)
    if revocations is None:
        return
    if not isinstance(revocations, RevocationList):
        run.fail("revocation", "DCC_REVOCATION_UNAVAILABLE", "revocation data is not usable")
        return
    if uvci is None:
        run.fail("revocation", "DCC_REVOCATION_UNAVAILABLE", "no certificate identifier to look up")
        return
    country = claims.iss or _entry_country(claims.dcc) or ""
    kind = revocations.revoked_by(dcc_hashes(uvci, country, sign1))
    if kind:
        run.fail("revocation", "DCC_REVOKED", f"listed as revoked ({kind} hash)")
    else:
        run.ok("revocation", f"not among {len(revocations)} revoked entries")


def _entry_country(dcc: Decoded) -> str | None:
    for kind in ("v", "t", "r"):
        entries = dcc.get(kind) if isinstance(dcc, dict) else None
        if isinstance(entries, list) and entries and isinstance(entries[0], dict):
            co = entries[0].get("co")
            return co if isinstance(co, str) else None
    return None
