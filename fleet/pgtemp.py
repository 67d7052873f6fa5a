"""A throwaway PostgreSQL server on a free loopback port, for tests and benchmarks.

Finds initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin. PostgreSQL refuses to run as
root, so as root the cluster is owned by, and run as, the `postgres` system user.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


class PostgresUnavailable(RuntimeError):
    """Why a throwaway PostgreSQL cannot be started here (the message says what to install)."""


def find_binaries() -> Path:
    """Folder holding initdb and pg_ctl; raises PostgresUnavailable when there is none."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise PostgresUnavailable("PostgreSQL server binaries not found (initdb/pg_ctl); "
                              "install them with `apt-get install -y postgresql`")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TemporaryPostgres:
    """initdb + pg_ctl start in a temporary folder; `.url(db)` names a database in it."""

    def __init__(self, durable: bool = False) -> None:
        self.bin = find_binaries()
        self.durable = durable  # False: fsync off, fine for throwaway test data
        self.run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and no `postgres` user to run "
                                          "the server as") from None
            self.run_as = "postgres"
        self.folder = Path(tempfile.mkdtemp(prefix="healthgate-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._started = False

    def _command(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *argv] if self.run_as else list(argv)

    def _run(self, *argv: str, timeout: float) -> None:
        result = subprocess.run(self._command(*argv), capture_output=True, text=True,
                                timeout=timeout, cwd=self.folder)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{Path(argv[0]).name} failed: "
                                      f"{(result.stderr or result.stdout).strip()[-400:]}")

    def start(self) -> "TemporaryPostgres":
        if self.run_as:
            shutil.chown(self.folder, user=self.run_as)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-instructions", timeout=START_TIMEOUT_S)
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "server.log"), "-o", options, "-w", "-t",
                  str(START_TIMEOUT_S), "start", timeout=START_TIMEOUT_S + 10)
        self._started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "healthgate") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def create_schema(self, prefix: str = "t") -> str:
        """A fresh, empty schema in the default database (much cheaper than CREATE DATABASE);
        returns a URL whose connections use it as their search path."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        if self._started:
            self._started = False
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "-t", str(STOP_TIMEOUT_S), "stop", timeout=STOP_TIMEOUT_S + 10)
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass  # best effort: the folder goes anyway
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "TemporaryPostgres":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


_shared: TemporaryPostgres | None = None
_shared_error: PostgresUnavailable | None = None  # remembered: do not retry a slow failure
_shared_lock = threading.Lock()


def shared_postgres() -> TemporaryPostgres:
    """One server per process, started on first use and stopped at exit (tests share it)."""
    global _shared, _shared_error
    with _shared_lock:
        if _shared_error is not None:
            raise _shared_error
        if _shared is None:
            try:
                server = TemporaryPostgres()
            except PostgresUnavailable as error:
                _shared_error = error
                raise
            try:
                server.start()
            except PostgresUnavailable as error:
                server.stop()
                _shared_error = error
                raise
            except BaseException:
                server.stop()
                raise
            atexit.register(server.stop)
            _shared = server
        return _shared
