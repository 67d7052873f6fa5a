"""Hands the kiosk the current trust store, reloading the cache directory when sync changes it."""
from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.credentials import TrustStore

if TYPE_CHECKING:
    from firmware.protocol.envelope import PinnedKeys

log = logging.getLogger(__name__)


class TrustProvider:
    """Callable returning the current TrustStore.

    The first call loads the cache directory (at boot, before any decision). After that, when
    the directory's files change, the new data is loaded on a background thread and swapped in
    when ready; meanwhile the loop keeps the previous store. A big revocation list takes about a
    minute to index the first time (docs/benchmarks.md): in the loop thread that would stop the
    frame loop and trip the service watchdog. A cache that fails to load keeps the previous
    store (and its age keeps growing, so the max-age policy eventually refuses rather than
    trusting broken data). Bad data inside the files does not fail the load: the new store
    lists it in `TrustStore.problems` and denies only where it applies (docs/credentials.md,
    "Bad trust data"); the kiosk logs those problems as a `trust_problems` event.
    """

    def __init__(self, directory: Path, country: str | None = None, region: str | None = None,
                 pinned_keys: PinnedKeys = None,
                 dcc_signer_validity: str | None = None) -> None:
        self._directory = directory
        self._signer_validity = dcc_signer_validity  # None: the TrustStore default
        # DCC business rules are the rules of the country the kiosk stands in
        self._country, self._region = country or None, region or None
        self._pinned_keys = pinned_keys
        self._lock = threading.Lock()
        self._loaded: tuple[tuple[str, int, int], ...] | None = None  # files of the store
        self._loading: threading.Thread | None = None
        self._store = TrustStore()
        if dcc_signer_validity is not None:
            self._store.dcc_signer_validity = dcc_signer_validity

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
        signature = self._current_signature()
        with self._lock:
            if self._loaded is None:
                self._adopt(signature, self._read())  # boot: nothing to fall back on yet
            elif signature != self._loaded and self._loading is None:
                self._loading = threading.Thread(target=self._reload, args=(signature,),
                                                 name="trust-reload", daemon=True)
                self._loading.start()
            return self._store

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait for a reload in progress (for tests); True when none is running any more."""
        with self._lock:
            loading = self._loading
        if loading is not None:
            loading.join(timeout_s)
            return not loading.is_alive()
        return True

    def _reload(self, signature: tuple[tuple[str, int, int], ...]) -> None:
        try:
            store = self._read()
            with self._lock:
                self._adopt(signature, store)
        finally:
            with self._lock:
                self._loading = None

    def _adopt(self, signature: tuple[tuple[str, int, int], ...], store: TrustStore | None) -> None:
        """Take a loaded store (under the lock); a set of files that failed to load keeps the
        previous store and is not retried until the files change again."""
        if store is not None:
            self._store = store
        self._loaded = signature

    def _read(self) -> TrustStore | None:
        try:
            from firmware.credentials.store import load_trust_dir
            store = load_trust_dir(self._directory, pinned_keys=self._pinned_keys,
                                   country=self._country, region=self._region)
            if self._signer_validity is not None:  # a kiosk policy, not trust data
                store.dcc_signer_validity = self._signer_validity
            return store
        except Exception as exc:  # keep the last good store; the age policy decides
            log.error("trust cache %s failed to load: %s", self._directory, exc)
            return None
