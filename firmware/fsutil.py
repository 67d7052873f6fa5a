"""Crash-safe file replacement with restrictive permissions, shared by every writer of state files."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
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


PRIVATE_DIR_MODE = 0o700  # state folders: the owner only
PRIVATE_FILE_MODE = 0o600  # keys, databases, caches: the owner only
PRIVATE_UMASK = 0o077  # what the service unit sets (UMask=0077); the commands set it too


def ensure_private_dir(path: str | Path) -> Path:
    """Create `path` (and missing parents) mode 0700; an existing folder is left as it is
    (it may be a shared one the operator chose, such as /tmp)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    return path


def create_private_file(path: str | Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (an existing file is untouched).

    For SQLite: it gives the -wal and -shm files the mode of the database file, so a database
    created this way keeps all three owner-only, whatever the umask.
    """
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))


def private_umask() -> "contextlib.AbstractContextManager[None]":
    """Files and folders created inside the block get no group or other permissions."""
    return _umask(PRIVATE_UMASK)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def unwritable_reason(folder: str | Path) -> str | None:
    """Why files cannot be created in `folder` (None when they can), found by creating and
    removing a probe file: permission bits alone do not tell (root, read-only mounts,
    immutable folders)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def restrict_to_owner(path: str | Path) -> None:
    """Take group and other permissions off an existing file of ours (no-op when missing)."""
    try:
        mode = os.stat(path).st_mode & 0o777
        if mode & ~PRIVATE_FILE_MODE:
            os.chmod(path, mode & PRIVATE_FILE_MODE)
    except FileNotFoundError:
        pass


def file_in_the_way(path: str | Path) -> Path | None:
    """The file (`path` itself or one of its parents) that stops `path` being a folder, or
    None: "a state path that is a file" then gets one line naming it, not a traceback."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def folder_problem(path: str | Path) -> str | None:
    """Why `path` cannot be used as a folder for our files (one phrase), or None: a file in
    the way, or (for an existing folder) no file can be created in it."""
    blocker = file_in_the_way(path)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    if Path(path).is_dir():
        reason = unwritable_reason(path)
        if reason is not None:
            return f"{path} is not writable ({reason})"
    return None
