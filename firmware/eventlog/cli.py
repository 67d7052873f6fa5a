"""`healthgate log ...` commands: verify the whole chain and every signature, show statistics."""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware import identity
from firmware.clihelp import HelpFormatter, example
from firmware.config import DEFAULT_STATE_DIR, STATE_DIR_ENV
from firmware.eventlog.outbox import upload_counts
from firmware.eventlog.verify import public_key_from_b64, read_meta, verify_file
from firmware.statefolder import StateFolder

EXIT_OK, EXIT_BROKEN, EXIT_ERROR = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthgate log", description=__doc__,
                                     formatter_class=HelpFormatter,
                                     epilog=example("healthgate log verify",
                                                    "healthgate log stats --json"))
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("verify", "check every hash, signature and chain link"),
                       ("stats", "count pending, uploaded and rejected events")):
        cmd = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter,
                             epilog=example(f"healthgate log {name} --config "
                                            "/etc/healthgate/kiosk.toml"))
        cmd.add_argument("--state-dir", type=Path,
                         default=Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)),
                         help="state directory holding the device key and events.db "
                              f"(default: ${STATE_DIR_ENV} or {DEFAULT_STATE_DIR})")
        cmd.add_argument("--config", type=Path,
                         help="kiosk TOML configuration; its [state] dir replaces --state-dir")
        cmd.add_argument("--db", type=Path, help="event log database (default STATE_DIR/events.db)")
        cmd.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "verify":
            cmd.add_argument("--public-key",
                             help="device public key, base64 raw Ed25519 (default: from the "
                                  "state dir's device key, else the key stored in the log)")
    return parser


def _public_key(args: argparse.Namespace) -> tuple[Ed25519PublicKey | None, str]:
    """The key to verify with, and where it came from (the log's own copy proves integrity
    only, so it is the last resort and is reported as such)."""
    if args.public_key:
        return public_key_from_b64(args.public_key), "command line"
    try:
        return identity.load(args.state_dir).key.public_key(), f"device key in {args.state_dir}"
    except (identity.IdentityError, OSError):
        return None, "the log's own copy (integrity only, not authorship)"


def _stats(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        meta = read_meta(conn)
        counts = upload_counts(conn)
    finally:
        conn.close()
    return {"device_id": meta.get("device_id"), "events": counts.events,
            "pending": counts.pending, "uploaded": counts.uploaded, "rejected": counts.rejected,
            "tip_seq": counts.tip_seq or int(meta.get("anchor_seq", "0")),
            "anchor_seq": int(meta.get("anchor_seq", "0")),
            "last_acked": int(meta.get("last_acked", "0"))}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.config is not None:
        from firmware.config import ConfigError, load_config

        try:
            args.state_dir = Path(load_config(args.config).state.dir)
        except (ConfigError, OSError) as exc:
            print(f"healthgate log {args.command}: {exc}", file=sys.stderr)
            return EXIT_ERROR
    db = args.db or StateFolder(args.state_dir).events_db
    try:
        if args.command == "stats":
            figures = _stats(db)
            print(json.dumps(figures) if args.json else
                  "\n".join(f"{key}: {value}" for key, value in figures.items()))
            return EXIT_OK
        key, source = _public_key(args)
        report = verify_file(db, key)
    except (OSError, ValueError, sqlite3.Error) as exc:
        print(f"healthgate log {args.command}: cannot read {db}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({**report.as_dict(), "key_source": source}))
    else:
        print(f"{db}: {report}")
        print(f"verified with: {source}")
    return EXIT_OK if report.ok else EXIT_BROKEN


if __name__ == "__main__":
    raise SystemExit(main())
