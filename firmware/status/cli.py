"""`healthgate status`: one line for a shop owner on the box (state, trust age, uploads)."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from firmware.clihelp import HelpFormatter, example
from firmware.config import DEFAULT_STATE_DIR, STATE_DIR_ENV, ConfigError, load_config
from firmware.statefolder import StateFolder
from firmware.status.file import STALE_AFTER_S, read_status, status_line

EXIT_RUNNING, EXIT_NOT_RUNNING, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthgate status", formatter_class=HelpFormatter,
        description="One line: the kiosk's state, the age of its trust data, events waiting "
                    "for upload and the last upload. Exit 0 while the kiosk runs, 1 when it "
                    "does not (or never ran), 2 when the state folder is not there.",
        epilog=example("healthgate status", "healthgate status --config /etc/healthgate/kiosk.toml"))
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)),
                        help=f"the kiosk's state folder (default: ${STATE_DIR_ENV} or "
                             f"{DEFAULT_STATE_DIR})")
    parser.add_argument("--config", type=Path,
                        help="the kiosk's TOML configuration; its state.dir replaces --state-dir")
    return parser


def _pending_now(state: Path) -> int | None:
    """Events waiting, counted in the log itself (exact even when the kiosk is stopped)."""
    from firmware.eventlog.cli import _stats

    events_db = StateFolder(state).events_db
    if not events_db.is_file():
        return None
    try:
        return int(_stats(events_db)["pending"])  # type: ignore[call-overload]
    except Exception:  # a busy or damaged log: the status file's count stands
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    state: Path = args.state_dir
    if args.config is not None:
        try:
            state = Path(load_config(args.config).state.dir)
        except ConfigError as exc:
            print(f"configuration error: {exc}")
            return EXIT_USAGE
    if not state.is_dir():
        print(f"error: no state folder {state}: give --state-dir (or --config) of the kiosk")
        return EXIT_USAGE
    try:
        status = read_status(state)
    except ValueError as exc:
        print(f"error: {exc}; it is rewritten when the kiosk runs")
        return EXIT_NOT_RUNNING
    if status is None:
        print(f"NOT RUNNING: the kiosk has not run with state folder {state} yet "
              "(systemctl status healthgate)")
        return EXIT_NOT_RUNNING
    now = datetime.now(timezone.utc)
    if status.pending is not None:
        counted = _pending_now(state)
        status = status if counted is None else replace(status, pending=counted)
    print(status_line(status, now))
    quiet_s = (now - datetime.fromisoformat(status.updated_at)).total_seconds()
    running = status.state != "stopped" and quiet_s <= STALE_AFTER_S
    return EXIT_RUNNING if running else EXIT_NOT_RUNNING


if __name__ == "__main__":
    raise SystemExit(main())
