"""Shared pytest fixtures: the reference data folder and privacy guards."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test with a clear message when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fleet database URL: each test using it runs on SQLite and on a throwaway PostgreSQL
    (skipped with the reason where the PostgreSQL binaries are absent)."""
    from fleet.pgtemp import PostgresUnavailable, shared_postgres

    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fleet.db"
    try:
        return shared_postgres().create_schema()
    except PostgresUnavailable as error:
        pytest.skip(f"PostgreSQL variant skipped: {error}")
