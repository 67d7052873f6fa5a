"""Hands the kiosk the current trust store, reloading the cache directory when sync changes it."""
from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path
from typing import Any

from firmware.credentials import TrustStore

log = logging.getLogger(__name__)


class TrustProvider:
    """Callable returning the current TrustStore. Reloads when the directory's files change;
    a cache that fails to load keeps the previous store (and its age keeps growing, so the
    max-age policy eventually refuses rather than trusting broken data)."""

    def __init__(self, directory: Path, country: str | None = None, region: str | None = None,
                 pinned_keys: Any = None) -> None:
        self._directory = directory
        # DCC business rules are the rules of the country the kiosk stands in
        self._options = {"country": country or None, "region": region or None,
                         "pinned_keys": pinned_keys}
        self._lock = threading.Lock()
        self._signature: tuple[tuple[str, int, int], ...] | None = None
        self._store = TrustStore()

    def _current_signature(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = sorted(self._directory.iterdir())
        except OSError:
            return ()
        signature = []
        for path in entries:
            try:
                info = path.stat()
            except OSError:  # gone since listed: the sync thread renamed its temporary file
                continue
            if stat.S_ISREG(info.st_mode):
                signature.append((path.name, info.st_mtime_ns, info.st_size))
        return tuple(signature)

    def __call__(self) -> TrustStore:
        with self._lock:
            signature = self._current_signature()
            if signature != self._signature:
                self._signature = signature
                try:
                    from firmware.credentials.store import load_trust_dir
                    self._store = load_trust_dir(self._directory, **self._options)
                except Exception as exc:  # keep the last good store; the age policy decides
                    log.error("trust cache %s failed to load: %s", self._directory, exc)
            return self._store
