"""`healthgate-provision`: technician tool: identity, registration, self-test, face enrolment.

Exit codes: 0 done; 1 refused or failed (registration refused, self-test failed); 2 usage or
setup to fix first (a key that would be replaced, a missing state folder, a bad option).
`--json` prints one JSON object instead (keys in provisioning/output.py); `--dry-run` checks
everything and writes nothing.
"""
from __future__ import annotations

import argparse
import base64
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from firmware.clihelp import HelpFormatter, add_version, example
from firmware.config import DEFAULT_STATE_DIR, FLEET_URL_SCHEMES, STATE_DIR_ENV
from firmware.statefolder import StateFolder
from provisioning.output import USAGE_ERROR, Output, add_output_options, parse_args, run_handler

TEMPLATE_KEY_BYTES = 32
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = "/etc/healthgate/kiosk.toml"  # where docs/install-pi.md puts it


def add_state_dir_option(parser: argparse.ArgumentParser) -> None:
    """`--state-dir` (old spelling `--state`), defaulting to the one state folder."""
    parser.add_argument("--state-dir", "--state", dest="state", metavar="DIR",
                        default=os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR),
                        help="the kiosk's state folder, as state.dir in its configuration "
                             f"(default: ${STATE_DIR_ENV} or {DEFAULT_STATE_DIR})")


def state_folder_error(state: Path) -> str | None:
    """One line when `state` cannot be a state folder (a file in the way, not writable)."""
    from firmware.fsutil import folder_problem

    problem = folder_problem(state)
    if problem is None:
        return None
    return (f"error: state folder {state} cannot be used: {problem}; give --state-dir a folder "
            "the technician (and the service user) can write")


def fleet_url_error(url: str) -> str | None:
    """One line when `url` is not an http(s) URL with a host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
    if parts.scheme in FLEET_URL_SCHEMES and host:
        return None
    return (f"error: --fleet-url {url!r} is not an http:// or https:// URL with a host, such as "
            "https://fleet.example:8443")


def _init(args: argparse.Namespace, out: Output) -> int:
    from firmware.fsutil import private_umask
    from firmware.identity import IdentityError, load_or_create

    state = Path(args.state)
    problem = state_folder_error(state)
    if problem is not None:
        return out.fail(EXIT_USAGE, "STATE_FOLDER_UNUSABLE", problem.removeprefix("error: "))
    existed = StateFolder(state).has_identity()
    out.result["state_dir"] = str(state.resolve())
    key_problem = _fleet_key_problem(args, state)
    if key_problem is not None:
        return out.fail(EXIT_USAGE, *key_problem)
    if out.dry_run:
        if args.fleet_key:
            out.would(f"pin the fleet key in {StateFolder(state).fleet_key} and start the kiosk "
                      "in first-boot setup (it waits for a provisioning code)")
        return _init_dry_run(args, out, state, existed)
    try:
        with private_umask():  # the state folder's parents too, if init creates them
            identity = load_or_create(state, args.device_id)
    except IdentityError as exc:
        return out.fail(EXIT_FAILED, exc.code, str(exc))
    except OSError as exc:
        return out.fail(EXIT_USAGE, "STATE_FOLDER_UNUSABLE",
                        f"cannot create the state folder {state}: {exc.strerror}; give "
                        "--state-dir a folder you can write (as root for /var/lib/healthgate)")
    if existed:  # never a new key over an existing one: the fleet knows this one
        out.say("this state folder is already initialised; its identity is kept")
    if args.fleet_key:
        _pin_for_setup(state, args.fleet_key.strip())
        out.say(f"fleet key pinned in {StateFolder(state).fleet_key}; the kiosk starts in "
                "first-boot setup and waits for a provisioning code (docs/provisioning.md)")
    out.result["setup_pending"] = StateFolder(state).setup_pending.is_file()
    out.result.update(device_id=identity.device_id, public_key=identity.public_key_b64,
                      created=not existed)
    out.fields("device identity", [("device id", identity.device_id),
                                   ("public key", identity.public_key_b64),
                                   ("state dir", f"{state.resolve()} (mode 0700)")])
    return EXIT_OK


def _fleet_key_problem(args: argparse.Namespace, state: Path) -> tuple[str, str] | None:
    """(code, message) when `init --fleet-key` cannot pin the key it was given."""
    from firmware.protocol.keys import public_key_from_b64

    if not args.fleet_key:
        return None
    try:
        public_key_from_b64(args.fleet_key)
    except Exception as exc:
        return ("FLEET_KEY_INVALID", f"--fleet-key is not a base64 Ed25519 public key ({exc}); "
                "give the public key printed by `healthgate-fleet keygen`")
    pinned = StateFolder(state).pinned_fleet_key()
    if pinned is not None and pinned != args.fleet_key.strip():
        return ("FLEET_KEY_PINNED", f"a different fleet key is pinned in "
                f"{StateFolder(state).fleet_key}; `healthgate-provision register --force` "
                "replaces it")
    return None


def _pin_for_setup(state: Path, fleet_key: str) -> None:
    """Pin the fleet key and let the kiosk register itself from a code at its next start."""
    from firmware.setup.firstboot import mark_pending
    from firmware.fsutil import write_atomic

    write_atomic(StateFolder(state).fleet_key, (fleet_key + "\n").encode())  # mode 0600
    mark_pending(StateFolder(state))


def _init_dry_run(args: argparse.Namespace, out: Output, state: Path, existed: bool) -> int:
    """Everything init checks, read-only: the id's format, an existing identity, the folder."""
    from firmware.identity import DEVICE_ID_PATTERN, IdentityError, load

    if args.device_id is not None and not DEVICE_ID_PATTERN.match(args.device_id):
        return out.fail(EXIT_FAILED, "DEVICE_ID_INVALID",
                        "device id must be 3-64 chars of letters, digits, '.', '_' or '-'")
    if existed:
        try:
            identity = load(state)
        except IdentityError as exc:
            return out.fail(EXIT_FAILED, exc.code, str(exc))
        if args.device_id is not None and args.device_id != identity.device_id:
            return out.fail(EXIT_FAILED, "DEVICE_ID_MISMATCH",
                            f"state dir belongs to device {identity.device_id!r}, "
                            f"not {args.device_id!r}")
        out.result.update(device_id=identity.device_id, public_key=identity.public_key_b64,
                          created=False)
        out.would(f"keep the identity of {identity.device_id} in {state}; nothing to change")
        return EXIT_OK
    reason = _unwritable_ancestor(state)
    if reason is not None:
        return out.fail(EXIT_USAGE, "STATE_FOLDER_UNUSABLE", reason)
    if not state.is_dir():
        out.would(f"create the state folder {state} (mode 0700)")
    out.would(f"create a new Ed25519 device key and the device id "
              f"{args.device_id or 'hg-... (random)'} in {state}")
    out.result.update(device_id=args.device_id, created=True)
    return EXIT_OK


def _unwritable_ancestor(folder: Path) -> str | None:
    """Why `folder` (or, when it does not exist yet, its nearest existing parent, where it
    would be created) cannot be written; None when it can."""
    from firmware.fsutil import unwritable_reason

    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    reason = unwritable_reason(existing)
    return None if reason is None else (
        f"cannot create the state folder {folder}: {existing} is not writable ({reason}); "
        "give --state-dir a folder you can write (as root for /var/lib/healthgate)")


# a token from `healthgate-fleet token create`, as the fleet's API accepts it (fleet/models.py)
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def _register(args: argparse.Namespace, out: Output) -> int:
    from firmware.fsutil import write_atomic
    from firmware.identity import IdentityError, load
    from firmware.protocol.keys import public_key_from_b64
    from firmware.sync.trustsync import RegistrationError, register_device

    state = Path(args.state)
    url_problem = fleet_url_error(args.fleet_url)
    if url_problem is not None:
        return out.fail(EXIT_USAGE, "FLEET_URL_INVALID", url_problem.removeprefix("error: "))
    try:
        identity = load(state)
    except IdentityError as exc:
        return out.fail(EXIT_FAILED, exc.code, f"{exc} (run `healthgate-provision init "
                                               f"--state-dir {state}` first)")
    try:
        public_key_from_b64(args.fleet_key)
    except Exception as exc:
        return out.fail(EXIT_USAGE, "FLEET_KEY_INVALID",
                        f"--fleet-key is not a base64 Ed25519 public key ({exc}); give the "
                        "public key printed by `healthgate-fleet keygen`")
    wanted = args.fleet_key.strip()
    pinned_before = StateFolder(state).pinned_fleet_key()
    if pinned_before is not None and pinned_before != wanted and not args.force:
        return out.fail(EXIT_USAGE, "FLEET_KEY_PINNED",
                        f"a different fleet key is pinned in {StateFolder(state).fleet_key}; add "
                        "--force to replace it (the kiosk then refuses trust data signed with "
                        "the old key)")
    if not TOKEN_PATTERN.fullmatch(args.token):
        return out.fail(EXIT_USAGE, "TOKEN_FORMAT",
                        "--token is not an enrolment token (16-128 letters, digits, '-' or "
                        "'_'); give the one `healthgate-fleet token create` printed")
    problem = state_folder_error(state)  # before the one-time token is spent
    if problem is not None:
        return out.fail(EXIT_USAGE, "STATE_FOLDER_UNUSABLE", problem.removeprefix("error: "))
    pinned = StateFolder(state).fleet_key
    out.result.update(device_id=identity.device_id, fleet_url=args.fleet_url,
                      fleet_key_file=str(pinned))
    if out.dry_run:
        return _register_dry_run(args, out, identity.device_id, pinned)
    try:
        with out.step(f"registering {identity.device_id} with {args.fleet_url}"):
            register_device(args.fleet_url, args.token, identity.device_id, identity.key)
    except RegistrationError as exc:
        if exc.code == "NETWORK_ERROR":  # no answer: say where and what to check
            return out.fail(EXIT_FAILED, exc.code, f"{exc.detail}; check --fleet-url, the "
                                                   "network and that the fleet server runs")
        return out.fail(EXIT_FAILED, exc.code, f"registration refused: {exc}")
    write_atomic(pinned, (wanted + "\n").encode())  # mode 0600, whole or not at all
    from firmware.setup.firstboot import clear_pending
    clear_pending(StateFolder(state))  # registered: no first-boot setup at the next start
    out.say(f"registered {identity.device_id} with {args.fleet_url}; fleet key pinned in {pinned}")
    return EXIT_OK


def _register_dry_run(args: argparse.Namespace, out: Output, device_id: str,
                      pinned: Path) -> int:
    """Ask the fleet for its time (unauthenticated, spends nothing): reachable or not."""
    import requests

    from firmware.sync.neterror import cannot_reach

    base = args.fleet_url.rstrip("/")
    try:
        with out.step(f"asking {base} for its time"):
            answer = requests.get(base + "/v1/time", timeout=10)
            answer.raise_for_status()
            server_time = str(answer.json().get("now"))
    except (requests.RequestException, ValueError, AttributeError) as exc:
        text = (cannot_reach(base, exc) if isinstance(exc, requests.RequestException)
                else f"{base}/v1/time did not answer as a fleet server does")
        return out.fail(EXIT_FAILED, "NETWORK_ERROR", f"{text}; check --fleet-url, the "
                                                      "network and that the fleet server runs")
    out.say(f"fleet {base} reachable (server time {server_time})")
    out.result["server_time"] = server_time
    out.would(f"register {device_id} with {base} using the one-time token (not spent now)")
    out.would(f"pin the fleet key in {pinned}")
    return EXIT_OK


def sealed_templates(state: Path, key_id: str) -> int | None:
    """How many cached status records carry a member template sealed with `key_id` (None when
    the cached records cannot be read)."""
    from firmware.credentials.status import load_trust
    from firmware.protocol.keys import public_key_from_b64

    pinned = StateFolder(state).pinned_fleet_key()
    try:
        trust = load_trust(StateFolder(state).trust_dir,
                           pinned_keys=[public_key_from_b64(pinned)] if pinned else None)
    except Exception:  # a damaged cache: say we could not count, do not guess
        return None
    if trust is None or trust.cache is None:
        return 0
    return sum(1 for record in trust.cache.records()
               if record.face_template is not None and record.face_key_id == key_id)


def _template_key(args: argparse.Namespace, out: Output) -> int:
    from firmware.fsutil import write_atomic
    from firmware.vision.record_template import KEY_ID_PATTERN, TemplateKeyring

    if args.generate == (args.import_b64 is not None):
        return out.fail(EXIT_USAGE, USAGE_ERROR, "give exactly one of --generate or --import-b64")
    state = Path(args.state)
    problem = state_folder_error(state)
    if problem is not None:
        return out.fail(EXIT_USAGE, "STATE_FOLDER_UNUSABLE", problem.removeprefix("error: "))
    if not state.is_dir():
        return out.fail(EXIT_USAGE, "STATE_FOLDER_MISSING",
                        f"no state folder {state}: run `healthgate-provision init --state-dir "
                        f"{state}` first (or give the --state-dir you provisioned)")
    if not KEY_ID_PATTERN.fullmatch(args.id):
        return out.fail(EXIT_USAGE, "KEY_ID_INVALID",
                        f"--id {args.id!r}: a key id is letters, digits, '.', '_' or '-'")
    try:
        key = os.urandom(32) if args.generate else base64.b64decode(args.import_b64, validate=True)
    except ValueError as exc:
        return out.fail(EXIT_USAGE, "KEY_INVALID",
                        f"--import-b64 is not base64 ({exc}); give the site key as base64 of "
                        "32 bytes, as `template-key --generate --show-key` prints it")
    if len(key) != TEMPLATE_KEY_BYTES:
        return out.fail(EXIT_USAGE, "KEY_INVALID",
                        f"--import-b64 decodes to {len(key)} bytes; a site key is "
                        f"{TEMPLATE_KEY_BYTES} bytes (base64 of 44 characters)")
    path = StateFolder(state).template_keys_dir / f"{args.id}.key"
    out.result.update(key_id=args.id, path=str(path), replaced=False, backup=None)
    if path.exists():
        if not args.generate and path.read_bytes() == key:
            out.say(f"template key {args.id!r} is already installed in {path}; nothing changed")
            return EXIT_OK
        count = sealed_templates(state, args.id)
        lost = ("an unknown number of" if count is None else str(count))
        out.result["sealed_templates"] = count
        if not args.force:
            return out.fail(EXIT_USAGE, "KEY_EXISTS",
                            f"template key {args.id!r} exists in {path}; replacing it makes "
                            f"{lost} cached member template(s) sealed with it unreadable "
                            "(members must then show their code); add --force to replace it "
                            "after a backup")
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        backup = path.with_name(f"{path.name}.bak-{stamp}")
        out.result.update(replaced=True, backup=str(backup))
        if out.dry_run:
            out.would(f"back up the old key to {backup}; {lost} cached member template(s) "
                      "sealed with it would become unreadable")
        else:
            write_atomic(backup, path.read_bytes())
            out.say(f"backup of the old key written to {backup}; {lost} cached member "
                    "template(s) sealed with it become unreadable")
    if out.dry_run:
        out.would(f"install {'a new' if args.generate else 'the given'} template key "
                  f"{args.id!r} in {path} (mode 0600)")
        return EXIT_OK
    try:
        installed = TemplateKeyring(StateFolder(state).template_keys_dir).install(args.id, key)
    except ValueError as exc:
        return out.fail(EXIT_FAILED, "KEY_NOT_INSTALLED", str(exc))
    out.say(f"template key {args.id!r} installed in {installed} (mode 0600)")
    if args.generate:
        if args.show_key:  # for the fleet's sealing tool and the site's other kiosks
            out.say(f"key (base64): {base64.b64encode(key).decode()}")
            out.result["key_b64"] = base64.b64encode(key).decode()
        else:
            out.say("the key is not shown; run again with --show-key on a new id, or copy "
                    f"{installed} to the fleet's sealing tool")
    return EXIT_OK


def _selftest(args: argparse.Namespace, out: Output) -> int:
    from provisioning.selftest import CHECKS, result_line, run_checks, verdict

    with out.progress("self-test", len(CHECKS)) as starting:
        results = run_checks(Path(args.config), starting)
    out.result["checks"] = [{"name": r.name, "ok": r.ok, "detail": r.detail} for r in results]
    if out.mode == "plain":  # one line a check, as logs and scripts have always read them
        for result in results:
            out.say(result_line(result))
    else:
        out.table("self-test", ["check", "result", "detail"],
                  [[r.name, "ok" if r.ok else "FAIL", r.detail] for r in results])
    failed = [r.name for r in results if not r.ok]
    if failed:
        return out.fail(EXIT_FAILED, "SELFTEST_FAILED",
                        f"{verdict(results)}: {', '.join(failed)}")
    out.say(verdict(results))
    return EXIT_OK


def _import_bundle(args: argparse.Namespace, out: Output) -> int:
    from provisioning import importbundle

    return importbundle.run(args, out)


def _enrol(argv: list[str]) -> int:
    from provisioning import enrol

    return int(enrol.main(argv) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthgate-provision", description=__doc__, formatter_class=HelpFormatter,
        epilog=example("healthgate-provision init --device-id shop-12-door",
                       "healthgate-provision register --fleet-url https://fleet.example:8443 "
                       "--token TOKEN --fleet-key KEY",
                       "healthgate-provision selftest --config /etc/healthgate/kiosk.toml"))
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str, *lines: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, epilog=example(*lines),
                              formatter_class=HelpFormatter)

    init = command("init", "create the device identity in the state directory",
                   "healthgate-provision init --state-dir /var/lib/healthgate "
                   "--device-id shop-12-door")
    add_state_dir_option(init)
    add_output_options(init)
    init.add_argument("--device-id", default=None,
                      help="an id from the fleet operator (default: a random hg-... id)")
    init.add_argument("--fleet-key", default=None,
                      help="pin the fleet's public key (healthgate-fleet keygen) and let the "
                           "kiosk register itself: it starts in first-boot setup and waits "
                           "for a provisioning code or bundle")
    register = command("register", "register with the fleet server, pin its key",
                       "healthgate-provision register --fleet-url https://fleet.example:8443 "
                       "--token TOKEN --fleet-key KEY")
    add_state_dir_option(register)
    add_output_options(register)
    register.add_argument("--fleet-url", "--fleet", dest="fleet_url", required=True,
                          help="fleet server URL, as fleet.url in the configuration")
    register.add_argument("--token", required=True,
                          help="one-time enrolment token (healthgate-fleet token create)")
    register.add_argument("--fleet-key", required=True,
                          help="the fleet's trust-signing public key (healthgate-fleet keygen)")
    register.add_argument("--force", action="store_true",
                          help="replace a different fleet key that is already pinned")
    template_key = command("template-key", "install the site key that opens enrolled templates",
                           "healthgate-provision template-key --id site-1 --import-b64 KEY")
    add_state_dir_option(template_key)
    add_output_options(template_key)
    template_key.add_argument("--id", required=True, help="key id, as records name it")
    template_key.add_argument("--generate", action="store_true", help="create a new site key")
    template_key.add_argument("--import-b64", default=None, help="install a given key")
    template_key.add_argument("--force", action="store_true",
                              help="replace an existing key with this id (a backup is written)")
    template_key.add_argument("--show-key", action="store_true",
                              help="print a generated key (base64); it is secret")
    selftest = command("selftest", "check camera, display, clock, trust data, fleet",
                       "healthgate-provision selftest --config /etc/healthgate/kiosk.toml")
    selftest.add_argument("--config", default=DEFAULT_CONFIG,
                          help="the kiosk's TOML configuration")
    add_output_options(selftest, dry_run=False)  # the self-test writes nothing anyway
    from provisioning import importbundle  # offline bundles: their own module
    importbundle.add_parser(command, add_state_dir_option)
    sub.add_parser("enrol", help="enrol an opted-in member's face (see --help of enrol)")
    sub.add_parser("erase", help="erase an enrolled member")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("enrol", "erase"):
        return _enrol(args_list)
    args = parse_args(_parser(), args_list)
    if isinstance(args, int):
        return args
    handlers = {"init": _init, "register": _register, "selftest": _selftest,
                "template-key": _template_key, "import-bundle": _import_bundle}
    out = Output.for_args(args.command, args)
    return out.finish(run_handler(handlers[args.command], args, out))


if __name__ == "__main__":
    raise SystemExit(main())
