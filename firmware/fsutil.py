"""Crash-safe file replacement with restrictive permissions, shared by every writer of state files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: readers see the old file or the new one, never a half of it.

    A uniquely named sibling temporary file (`.<name>.<random>.tmp`, created exclusively, so two
    writers never share one) gets `mode` before any byte is written, is fsynced and renamed over
    `path`; then the folder is fsynced so the rename itself survives a power cut. On failure the
    temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # exact, whatever the umask (mkstemp made it 0600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
