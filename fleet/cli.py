"""`healthgate-fleet`: serve the fleet API and administer devices, tokens and trust data."""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path
from typing import Sequence

DEFAULT_DB = "sqlite:///fleet-state/fleet.db"
DEFAULT_KEY = "fleet-state/signing.key"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthgate-fleet", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=os.environ.get("HEALTHGATE_FLEET_DB", DEFAULT_DB),
                        help="sqlite:///path.db (default) or postgresql://user@host:port/db "
                             "[env HEALTHGATE_FLEET_DB]")
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument("--key", type=Path,
                       default=Path(os.environ.get("HEALTHGATE_FLEET_KEY", DEFAULT_KEY)),
                       help="fleet signing key file [env HEALTHGATE_FLEET_KEY]")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("init", parents=[common],
                        help="create the fleet database (serve also creates it); the admin "
                             "commands below never do")

    serve = commands.add_parser("serve", parents=[common],
                                help="run the API server (uvicorn); creates the database")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024)
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (ingest is CPU-bound: about one per core)")
    serve.add_argument("--skew-window", type=int, default=300,
                       help="seconds a signed request's timestamp may differ from server time")

    token = commands.add_parser("token", help="enrolment tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", parents=[common],
                                       help="print a new one-time enrolment token")
    create.add_argument("--ttl-hours", type=float, default=24.0)

    devices = commands.add_parser("devices", help="registered devices")
    device_commands = devices.add_subparsers(dest="devices_command", required=True)
    device_commands.add_parser("list", parents=[common], help="list devices and event counts")

    commands.add_parser("incidents", parents=[common],
                        help="list rejected events (forgeries, forks, broken chains)")

    publish = commands.add_parser("publish", parents=[common, keyed],
                                  help="sign and publish a trust data item")
    publish.add_argument("name", help="e.g. dcc-signers, dcc-rules, status-records")
    publish.add_argument("file", type=Path, help="JSON file with the content")

    operator = commands.add_parser("operator", help="dashboard operators")
    operator_commands = operator.add_subparsers(dest="operator_command", required=True)
    add_operator = operator_commands.add_parser(
        "add", parents=[common], help="add a dashboard operator (asks for the password)")
    add_operator.add_argument("name")
    add_operator.add_argument("--password-stdin", action="store_true",
                              help="read the password from the first line of stdin (scripts)")

    commands.add_parser("openapi", help="print the OpenAPI document of the API (JSON)")

    commands.add_parser("keygen", parents=[keyed],
                        help="create the fleet signing key; prints the public key to pin")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError) as error:
        print(f"healthgate-fleet: error: {error}", file=sys.stderr)
        return 2


def _exists(url: str) -> bool:
    """Whether the database at `url` already holds a fleet schema."""
    from fleet.db import DatabaseMissing
    from fleet.storage import Store

    try:
        Store(url, create=False).close()
    except DatabaseMissing:
        return False
    return True


def _run(args: argparse.Namespace) -> int:
    # Imports here keep `--help` fast and free of database drivers.
    from fleet.storage import Store, utc_now
    from fleet.trust import (generate_signing_key, load_content_file, load_signing_key, publish,
                             public_key_b64)

    if args.command == "keygen":
        if args.key.exists():
            raise ValueError(f"{args.key} exists; refusing to replace a fleet key")
        key = generate_signing_key(args.key)
        print(f"wrote {args.key}")
        print(f"public key (pin this on kiosks): {public_key_b64(key)}")
        return 0
    if args.command == "openapi":
        from fleet.server import openapi_document

        sys.stdout.write(openapi_document())
        return 0
    if args.command == "init":
        existed = _exists(args.db)
        store = Store(args.db)
        try:
            state = "exists; nothing changed" if existed else "created"
            print(f"fleet database {store.description}: {state} "
                  f"(schema v{store.schema_version()})")
        finally:
            store.close()
        return 0
    if args.command == "serve":
        import uvicorn

        from fleet.server import create_app

        store = Store(args.db)  # created and migrated once, before any worker starts
        print(f"database: {store.description}", file=sys.stderr)
        store.close()

        if args.workers > 1:
            # Ingest is CPU-bound (signature checks): worker processes share the store; the
            # per-device row lock (PostgreSQL) or the write lock (SQLite) keeps chains consistent.
            from fleet import server

            os.environ.update({server.ENV_DB: args.db,
                               server.ENV_MAX_BODY: str(args.max_body_bytes),
                               server.ENV_SKEW_WINDOW: str(args.skew_window)})
            uvicorn.run("fleet.server:app_from_environment", factory=True, workers=args.workers,
                        host=args.host, port=args.port, log_level="info",
                        timeout_graceful_shutdown=10)
            return 0
        app = create_app(args.db, max_body_bytes=args.max_body_bytes,
                         skew_window_s=args.skew_window)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                    timeout_graceful_shutdown=10)
        return 0
    # Admin commands never create a database: a mistyped --db (or another working folder)
    # would otherwise get an empty one, and its tokens would be unknown to the real server.
    store = Store(args.db, create=False)
    print(f"database: {store.description}", file=sys.stderr)
    try:
        if args.command == "token":
            token = secrets.token_urlsafe(24)
            store.add_token(token, utc_now() + timedelta(hours=args.ttl_hours))
            print(token)
        elif args.command == "devices":
            print(f"{'device_id':<32} {'events':>8} {'max_seq':>8}  registered_at")
            for device in store.devices():
                max_seq = "-" if device.max_seq is None else str(device.max_seq)
                print(f"{device.device_id:<32} {device.event_count:>8} {max_seq:>8}  "
                      f"{device.registered_at}")
        elif args.command == "incidents":
            for incident in store.incidents():
                print(f"{incident['at']}  {incident['device_id']}  seq={incident['seq']}  "
                      f"{incident['reason']}  {incident['detail']}")
        elif args.command == "operator":
            _add_operator(store, args)
        elif args.command == "publish":
            item = publish(store, load_signing_key(args.key), args.name,
                           load_content_file(args.file))
            print(f"published {item.name} version {item.version} etag {item.etag}")
    finally:
        store.close()
    return 0


def _add_operator(store: object, args: argparse.Namespace) -> None:
    """`operator add NAME`: the password is hashed with argon2; it is never an argument (it
    would land in the shell history and the process list)."""
    from fleet.dashboard.auth import OperatorError, add_operator
    from fleet.storage import rfc3339, utc_now

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the passwords differ")
    try:
        add_operator(store, args.name, password, rfc3339(utc_now()))
    except OperatorError as error:
        raise ValueError(str(error)) from None
    print(f"operator {args.name} added")


if __name__ == "__main__":
    sys.exit(main())
