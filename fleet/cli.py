"""`healthgate-fleet`: serve the fleet API and administer devices, tokens and trust data."""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from firmware.clihelp import HelpFormatter, add_version, example
from firmware.protocol.decoded import Decoded
from firmware.protocol.envelope import DEFAULT_TRUST_NAMES as TRUST_NAMES

if TYPE_CHECKING:
    from fleet.storage import Device, Store

T = TypeVar("T")

DEFAULT_DB = "sqlite:///fleet-state/fleet.db"
DEFAULT_KEY = "fleet-state/signing.key"
ONLINE_WITHIN_MIN = 35.0  # two trust-sync rounds (15 min each) and a margin
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthgate-fleet", description=__doc__, formatter_class=HelpFormatter,
        epilog=example("healthgate-fleet init --db sqlite:///fleet-state/fleet.db",
                       "healthgate-fleet keygen",
                       "healthgate-fleet serve --host 0.0.0.0 --port 8443",
                       "healthgate-fleet token create"))
    add_version(parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=os.environ.get("HEALTHGATE_FLEET_DB", DEFAULT_DB),
                        help="sqlite:///path.db or postgresql://user@host:port/db "
                             "[env HEALTHGATE_FLEET_DB]")
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument("--key", type=Path,
                       default=Path(os.environ.get("HEALTHGATE_FLEET_KEY", DEFAULT_KEY)),
                       help="fleet signing key file [env HEALTHGATE_FLEET_KEY]")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str,
                parents: list[argparse.ArgumentParser], *lines: str) -> argparse.ArgumentParser:
        return group.add_parser(name, parents=parents, help=text, description=text,
                                formatter_class=HelpFormatter, epilog=example(*lines))

    command(commands, "init", "create the fleet database (serve also creates it); the admin "
            "commands below never do", [common], "healthgate-fleet init --db sqlite:///fleet.db")

    serve = command(commands, "serve", "run the API server (uvicorn); creates the database; with "
                    "the fleet key it signs freshness statements", [common, keyed],
                    "healthgate-fleet serve --db postgresql://fleet@db/fleet "
                    "--host 0.0.0.0 --port 8443 --workers 2")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8443, help="port to listen on")
    serve.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024,
                       help="largest upload body (POST /v1/events); other routes 16 KiB")
    serve.add_argument("--body-budget-bytes", type=int, default=64 * 1024 * 1024,
                       help="all bodies in flight together, per worker process; beyond: 503")
    serve.add_argument("--max-uploads-per-device", type=int, default=4,
                       help="concurrent uploads of one device; beyond: 503")
    serve.add_argument("--min-receive-rate", type=float, default=1024.0,
                       help="bytes/s a body must arrive at after the grace period; slower: 408")
    serve.add_argument("--receive-grace", type=float, default=10.0,
                       help="seconds before the minimum receive rate applies")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (ingest is CPU-bound: about one per core)")
    serve.add_argument("--skew-window", type=int, default=300,
                       help="seconds a signed request's timestamp may differ from server time")

    token = command(commands, "token", "enrolment tokens: create, list, revoke", [],
                    "healthgate-fleet token create --ttl-hours 4")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = command(token_commands, "create", "print a new one-time enrolment token", [common],
                     "healthgate-fleet token create --ttl-hours 4")
    create.add_argument("--ttl-hours", type=float, default=24.0, help="hours the token is valid")
    command(token_commands, "list", "list tokens by id (the first 12 characters of their "
            "hash): created, expires, state", [common], "healthgate-fleet token list")
    revoke_token = command(token_commands, "revoke", "revoke an unused token", [common],
                           "healthgate-fleet token revoke 3f2a9c01b7de")
    revoke_token.add_argument("token", help="the token, or its id from `token list`")

    code = command(commands, "provision-code", "create a signed, one-time provisioning code "
                   "(QR) that a kiosk in maintenance mode scans to register itself",
                   [common, keyed], "healthgate-fleet provision-code --fleet-url "
                   "https://fleet.example:8443 --svg code.svg")
    code.add_argument("--fleet-url", required=True,
                      help="the fleet URL kiosks reach this server at (goes into the code)")
    code.add_argument("--ttl-minutes", type=float, default=15.0,
                      help="minutes the code (and its one-time token) is valid")
    code.add_argument("--svg", type=Path, default=None, help="also write the QR as an SVG file")
    code.add_argument("--png", type=Path, default=None, help="also write the QR as a PNG file")

    bundle = command(commands, "bundle", "write an offline provisioning bundle: a one-time code "
                     "and the current trust data, signed, for a USB stick",
                     [common, keyed], "healthgate-fleet bundle --fleet-url "
                     "https://fleet.example:8443 --out /media/usb/healthgate-bundle.zip")
    bundle.add_argument("--out", type=Path, required=True, help="the bundle file to write")
    bundle.add_argument("--fleet-url", required=True,
                        help="the fleet URL the kiosk registers with once it is online")
    bundle.add_argument("--ttl-hours", type=float, default=72.0,
                        help="hours the bundle (and its one-time token) is valid (at most 720)")

    devices = command(commands, "devices", "registered devices: list, revoke", [],
                      "healthgate-fleet devices list --json")
    device_commands = devices.add_subparsers(dest="devices_command", required=True)
    listing = command(device_commands, "list", "list devices: last seen, online, software, "
                      "trust age, pending events", [common], "healthgate-fleet devices list")
    listing.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    listing.add_argument("--online-within", type=float, default=ONLINE_WITHIN_MIN,
                         metavar="MINUTES",
                         help="a device seen within this many minutes is online (kiosks sync "
                              "trust data every 15 minutes and upload as they decide)")
    revoke_device = command(device_commands, "revoke", "refuse every later request of a "
                            "device (a stolen kiosk); its events are kept", [common],
                            "healthgate-fleet devices revoke shop-12-door")
    revoke_device.add_argument("device_id", help="the device id, as `devices list` shows it")

    command(commands, "incidents", "list rejected events (forgeries, forks, broken chains)",
            [common], "healthgate-fleet incidents")

    publish = command(commands, "publish", "sign and publish a trust data item",
                      [common, keyed], "healthgate-fleet publish dcc-signers signers.json")
    publish.add_argument("name", help=f"one of the names kiosks fetch: {', '.join(TRUST_NAMES)}")
    publish.add_argument("file", type=Path, help="JSON file with the content")
    publish.add_argument("--any-name", action="store_true",
                         help="publish under a name no kiosk fetches by default")

    operator = command(commands, "operator", "dashboard operators: add", [],
                       "healthgate-fleet operator add alice")
    operator_commands = operator.add_subparsers(dest="operator_command", required=True)
    add_operator = command(operator_commands, "add", "add a dashboard operator (asks for the "
                           "password)", [common], "healthgate-fleet operator add alice")
    add_operator.add_argument("name", help="the operator's login name")
    add_operator.add_argument("--password-stdin", action="store_true",
                              help="read the password from the first line of stdin (scripts)")

    command(commands, "openapi", "print the OpenAPI document of the API (JSON)", [],
            "healthgate-fleet openapi > fleet-openapi.json")

    command(commands, "keygen", "create the fleet signing key; prints the public key to pin",
            [keyed], "healthgate-fleet keygen --key fleet-state/signing.key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError) as error:
        print(f"healthgate-fleet: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # the database driver's own errors: one line, not a traceback
        problem = database_problem(error, getattr(args, "db", ""))
        if problem is None:
            raise
        print(f"healthgate-fleet: error: {problem}", file=sys.stderr)
        return EXIT_USAGE


def database_problem(error: Exception, url: str) -> str | None:
    """One line for a database that cannot be reached or opened (None: not such an error)."""
    import sqlite3

    module = type(error).__module__.split(".")[0]
    if module not in ("psycopg", "psycopg_pool") and not isinstance(error, sqlite3.Error):
        return None
    from fleet.db import open_database

    try:  # the URL without its password, as the database describes itself
        where = open_database(url, create=False).description if url else "the database"
    except Exception:
        where = url.split("@")[-1] if url else "the database"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "refused" in first.lower():
        first = "connection refused"
    return (f"cannot reach the database {where}: {first}; start the database server or fix "
            "--db (or HEALTHGATE_FLEET_DB)")


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
    from firmware.protocol.keys import public_key_b64
    from fleet.storage import Store
    from fleet.trust import generate_signing_key

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

        # With the fleet key the server signs freshness statements; without it, kiosks age
        # their copies by the envelopes' issued_at (docs/fleet-api.md, "Freshness").
        key_path = args.key if args.key.is_file() else None
        if key_path is None:
            print(f"note: no signing key at {args.key}: trust answers carry no freshness statement",
                  file=sys.stderr)
        if args.workers > 1:
            # Ingest is CPU-bound (signature checks): worker processes share the store; the
            # per-device row lock (PostgreSQL) or the write lock (SQLite) keeps chains consistent.
            from fleet import server

            os.environ.update({server.ENV_DB: args.db,
                               server.ENV_MAX_BODY: str(args.max_body_bytes),
                               server.ENV_SKEW_WINDOW: str(args.skew_window),
                               server.ENV_BODY_BUDGET: str(args.body_budget_bytes),
                               server.ENV_UPLOADS_PER_DEVICE: str(args.max_uploads_per_device),
                               server.ENV_MIN_RATE: str(args.min_receive_rate),
                               server.ENV_GRACE: str(args.receive_grace),
                               server.ENV_KEY: str(key_path or "")})
            uvicorn.run("fleet.server:app_from_environment", factory=True, workers=args.workers,
                        host=args.host, port=args.port, log_level="info",
                        timeout_graceful_shutdown=10)
            return 0
        app = create_app(args.db, key_path, max_body_bytes=args.max_body_bytes,
                         skew_window_s=args.skew_window,
                         body_budget_bytes=args.body_budget_bytes,
                         max_uploads_per_device=args.max_uploads_per_device,
                         min_receive_rate_bps=args.min_receive_rate,
                         receive_grace_s=args.receive_grace)
        uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                    timeout_graceful_shutdown=10)
        return 0
    # Admin commands never create a database: a mistyped --db (or another working folder)
    # would otherwise get an empty one, and its tokens would be unknown to the real server.
    if args.command == "publish" and args.name not in TRUST_NAMES and not args.any_name:
        raise ValueError(f"no kiosk fetches {args.name!r}: publish one of "
                         f"{', '.join(TRUST_NAMES)} (or add --any-name)")
    store = Store(args.db, create=False)
    print(f"database: {store.description}", file=sys.stderr)
    try:
        return _admin(store, args)
    finally:
        store.close()


def _admin(store: Store, args: argparse.Namespace) -> int:
    """The admin commands on an existing database; stdout is the answer, for scripts."""
    from firmware.protocol.timestamps import utc_now
    from fleet.trust import load_content_file, load_signing_key, publish

    now = utc_now()
    if args.command == "token":
        if args.token_command == "create":
            from fleet.tokens import new_token

            token = new_token()
            store.add_token(token, now + timedelta(hours=args.ttl_hours))
            print(token)
        elif args.token_command == "list":
            _print_lines(store.tokens(), "no enrolment tokens", lambda item: (
                f"{item.token_id}  created {_when(item.created_at)}  expires "
                f"{_when(item.expires_at)}  {item.state(int(now.timestamp()))}"))
        else:
            outcome = store.revoke_token(args.token, now)
            if outcome != "revoked":
                print({"unknown": f"no token {args.token!r}: see `healthgate-fleet token list`",
                       "ambiguous": f"{args.token!r} matches several tokens: give more of the id",
                       "used": f"token {args.token!r} was already used or revoked; to shut out "
                               "the device it enrolled, use `devices revoke`"}[outcome],
                      file=sys.stderr)
                return EXIT_REFUSED
            print(f"token {args.token} revoked")
    elif args.command == "devices":
        if args.devices_command == "revoke":
            if not store.revoke_device(args.device_id, now):
                print(f"no device {args.device_id!r}: see `healthgate-fleet devices list`",
                      file=sys.stderr)
                return EXIT_REFUSED
            print(f"device {args.device_id} revoked: its requests are refused from now on "
                  "(its events are kept)")
        else:
            _list_devices(store.devices(), now, args.online_within * 60.0, args.json)
    elif args.command == "provision-code":
        _provision_code(store, args, now)
    elif args.command == "bundle":
        _bundle(store, args, now)
    elif args.command == "incidents":
        _print_lines(store.incidents(), "no incidents", lambda incident: (
            f"{incident['at']}  {incident['device_id']}  seq={incident['seq']}  "
            f"{incident['reason']}  {incident['detail']}"))
    elif args.command == "operator":
        _add_operator(store, args)
    elif args.command == "publish":
        item = publish(store, load_signing_key(args.key), args.name,
                       load_content_file(args.file))
        print(f"published {item.name} version {item.version} etag {item.etag}")
    return EXIT_OK


def _provision_code(store: Store, args: argparse.Namespace, now: datetime) -> None:
    """Print the code text and its expiry; write the QR where asked (never the token alone)."""
    import segno

    from fleet.provisioncodes import create_code, fleet_url_problem
    from fleet.trust import load_signing_key

    problem = fleet_url_problem(args.fleet_url)
    if problem is not None:
        raise ValueError(problem)
    created = create_code(store, load_signing_key(args.key), args.fleet_url, args.ttl_minutes,
                          now)
    print(created.text)
    print(f"code {created.code_id} expires {created.expires_at.isoformat()}", file=sys.stderr)
    for path, kind in ((args.svg, "svg"), (args.png, "png")):
        if path is not None:
            segno.make(created.text, error="m", micro=False).save(str(path), kind=kind, scale=6)
            print(f"wrote {path}", file=sys.stderr)


def _bundle(store: Store, args: argparse.Namespace, now: datetime) -> None:
    from fleet.provisioncodes import create_bundle, fleet_url_problem
    from fleet.trust import load_signing_key

    problem = fleet_url_problem(args.fleet_url)
    if problem is not None:
        raise ValueError(problem)
    if args.out.exists():
        raise ValueError(f"{args.out} exists; refusing to replace it")
    data, created = create_bundle(store, load_signing_key(args.key), args.fleet_url,
                                  args.ttl_hours * 60.0, now)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes): code {created.code_id}, expires "
          f"{created.expires_at.isoformat()}")


def _print_lines(items: Sequence[T], empty: str, line: Callable[[T], str]) -> None:
    """One line per item, or `empty` when there is none."""
    if not items:
        print(empty)
    for item in items:
        print(line(item))


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def device_rows(devices: Sequence[Device], now: datetime, online_within_s: float) -> list[dict[str, Decoded]]:
    """What `devices list` shows of each device, as JSON-ready values."""
    rows = []
    for device in devices:
        seen_s = (None if device.last_seen is None else
                  max(0, int((now - datetime.fromisoformat(device.last_seen)).total_seconds())))
        state = ("revoked" if device.revoked_at else
                 "online" if seen_s is not None and seen_s <= online_within_s else "offline")
        rows.append({"device_id": device.device_id, "state": state,
                     "last_seen": device.last_seen, "last_seen_s_ago": seen_s,
                     "software": device.software, "trust_age_s": device.trust_age_s,
                     "pending": device.pending, "events": device.event_count,
                     "max_seq": device.max_seq, "registered_at": device.registered_at,
                     "revoked_at": device.revoked_at})
    return rows


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago" if seconds < 172800 else f"{seconds // 86400}d ago"


def _list_devices(devices: Sequence[Device], now: datetime, online_within_s: float,
                  as_json: bool) -> None:
    rows = device_rows(devices, now, online_within_s)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no devices registered")
        return
    print(f"{'device_id':<24} {'state':<8} {'last seen':<10} {'software':<10} "
          f"{'trust age':>9} {'pending':>7} {'events':>7}")
    for row in rows:
        trust = "-" if row["trust_age_s"] is None else _ago(row["trust_age_s"]).replace(" ago", "")
        pending = "-" if row["pending"] is None else str(row["pending"])
        print(f"{row['device_id']:<24} {row['state']:<8} {_ago(row['last_seen_s_ago']):<10} "
              f"{row['software'] or '-':<10} {trust:>9} {pending:>7} {row['events']:>7}")


def _add_operator(store: Store, args: argparse.Namespace) -> None:
    """`operator add NAME`: the password is hashed with argon2; it is never an argument (it
    would land in the shell history and the process list)."""
    from firmware.protocol.timestamps import rfc3339, utc_now
    from fleet.dashboard.auth import OperatorError, add_operator

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
