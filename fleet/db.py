"""Database back ends for the fleet store: SQLite (one site, WAL) and PostgreSQL (a fleet).

Both are driven through one tiny interface: `transaction()` yields a `Tx` whose `execute` takes
SQL written with `?` placeholders, so the store's SQL is written once for both.
"""
from __future__ import annotations

import queue
import sqlite3
import threading
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Protocol, Sequence, TypeVar
from urllib.parse import unquote, urlparse

from firmware.fsutil import create_private_file, ensure_private_dir, restrict_to_owner

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

POOL_WAIT_S = 30.0  # how long a request waits for a free connection before failing
SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_STATEMENT_TIMEOUT_MS = 30_000
PG_LOCK_TIMEOUT_MS = 10_000

DbValue = Any  # Any: a column value or parameter as sqlite3 and psycopg pass it (typed Any there)


class Cursor(Protocol):
    """What the store reads from an executed statement (sqlite3 or psycopg cursor); the rows
    are the driver's tuples of column values."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> DbValue: ...

    def fetchall(self) -> list[DbValue]: ...

    def __iter__(self) -> Iterator[DbValue]: ...


class Tx(Protocol):
    """One open transaction."""

    dialect: str

    def execute(self, sql: str, params: Sequence[DbValue] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[DbValue]]) -> None: ...

    def lock_device(self, device_id: str) -> None: ...


class Database(Protocol):
    """A connection pool that hands out transactions."""

    dialect: str
    description: str

    def transaction(self, readonly: bool = False) -> AbstractContextManager[Tx]: ...

    def close(self) -> None: ...


class _Connection(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Connection)  # a driver's connection (sqlite3 or psycopg)


class _Pool(Generic[C]):
    """A small bounded pool of connections, created on demand."""

    def __init__(self, connect: Callable[[], C], size: int) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[C] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[C] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[C]:
        if not self._slots.acquire(timeout=POOL_WAIT_S):
            raise TimeoutError("no database connection free")
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
                with self._lock:
                    self._all.append(conn)
            broken = False
            try:
                yield conn
            except BaseException:
                broken = _is_broken(conn)
                raise
            finally:
                if broken or self._closed:
                    _close_quietly(conn)
                    with self._lock:
                        if conn in self._all:
                            self._all.remove(conn)
                else:
                    self._idle.put(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._all:
                _close_quietly(conn)
            self._all.clear()


def _is_broken(conn: object) -> bool:
    return bool(getattr(conn, "closed", False)) or getattr(conn, "broken", False) is True


def _close_quietly(conn: _Connection) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may itself fail
        pass


class _SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[DbValue] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[DbValue]]) -> None:
        self._conn.executemany(sql, rows)

    def lock_device(self, device_id: str) -> None:
        """BEGIN IMMEDIATE already serialises every writer in SQLite."""


class SqliteDatabase:
    """SQLite in WAL mode with synchronous=FULL: an acknowledged event survives a power cut."""

    dialect = "sqlite"

    def __init__(self, path: Path, pool_size: int = 4, create: bool = True) -> None:
        self.path = path
        self.description = f"sqlite:///{path.absolute()}"
        if str(path) != ":memory:":
            if not create and not path.is_file():
                raise DatabaseMissing(self.description)
            # Owner-only: the folder 0700 when we make it, the file 0600 before SQLite opens
            # it (SQLite gives the -wal and -shm files the database file's mode).
            ensure_private_dir(path.parent)
            create_private_file(path)
            for existing in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                restrict_to_owner(existing)  # one created world-readable by an older version
        self._pool = _Pool(self._connect, pool_size)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                               timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at each commit, so "acked" means on disk, not in a page cache.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    @contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[_SqliteTx]:
        """Writers take the write lock up front (IMMEDIATE) so they never deadlock on an
        upgrade; readers use a deferred transaction and run alongside them (WAL)."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        self._pool.close()


class _PostgresTx:
    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[TupleRow]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[DbValue] = ()) -> Cursor:
        return self._conn.execute(sql.replace("?", "%s"), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[DbValue]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows)

    def lock_device(self, device_id: str) -> None:
        """Row lock on the device: one ingest per device at a time, so chain checks see a
        consistent neighbourhood even with many server processes."""
        self._conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))


class PostgresDatabase:
    """PostgreSQL through psycopg 3; each transaction on a pooled connection."""

    dialect = "postgresql"

    def __init__(self, url: str, pool_size: int = 8) -> None:
        import psycopg  # imported here: PostgreSQL support is an optional extra

        self._psycopg = psycopg
        self.url = url
        parsed = urlparse(url)
        self.description = f"postgresql://{parsed.hostname}:{parsed.port or 5432}{parsed.path}"
        self._pool = _Pool(self._connect, pool_size)

    def _connect(self) -> psycopg.Connection[TupleRow]:
        # autocommit: each `transaction()` block is then exactly one BEGIN ... COMMIT.
        conn = self._psycopg.connect(self.url, connect_timeout=10, autocommit=True)
        # Every wait has a bound: a stuck lock or statement fails the request, not the server.
        conn.execute(f"SET statement_timeout = {PG_STATEMENT_TIMEOUT_MS}")
        conn.execute(f"SET lock_timeout = {PG_LOCK_TIMEOUT_MS}")
        return conn

    @contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[_PostgresTx]:
        with self._pool.connection() as conn:
            with conn.transaction():
                if readonly:
                    conn.execute("SET TRANSACTION READ ONLY")
                yield _PostgresTx(conn)

    def close(self) -> None:
        self._pool.close()


class DatabaseMissing(ValueError):
    """An admin command named a database that does not exist (only `serve` and `init` create
    one); the message names it and says how to create it."""

    def __init__(self, description: str) -> None:
        super().__init__(f"no fleet database at {description}: create it with "
                         f"`healthgate-fleet init --db {description}`, or give the --db "
                         "(or HEALTHGATE_FLEET_DB) that `serve` uses")
        self.description = description


def open_database(url: str, create: bool = True) -> SqliteDatabase | PostgresDatabase:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db`, a plain file path, or
    `postgresql://user@host:port/db`. Raises ValueError for anything else. With
    `create=False` a missing SQLite file raises DatabaseMissing instead of being created."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    if url.startswith("sqlite://"):
        parsed = urlparse(url)
        path = unquote(parsed.path)
        if parsed.netloc:
            raise ValueError(f"database URL {url!r}: use sqlite:///relative or sqlite:////abs")
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise ValueError(f"database URL {url!r} names no file")
        return SqliteDatabase(Path(path), create=create)
    if "://" in url:
        raise ValueError(f"database URL {url!r}: only sqlite:// and postgresql:// are supported")
    return SqliteDatabase(Path(url), create=create)
