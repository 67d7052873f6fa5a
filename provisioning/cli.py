"""`healthgate-provision`: technician tool: identity, registration, self-test, face enrolment."""
from __future__ import annotations

import argparse
import base64
import sys
from collections.abc import Sequence
from pathlib import Path

FLEET_KEY_FILE = "fleet_key.pub"  # the pinned fleet signing key, base64 of 32 raw bytes


def _init(args: argparse.Namespace) -> int:
    from firmware.identity import IdentityError, load_or_create

    try:
        identity = load_or_create(Path(args.state), args.device_id)
    except IdentityError as exc:
        print(f"error: {exc}")
        return 1
    print(f"device id:  {identity.device_id}")
    print(f"public key: {identity.public_key_b64}")
    print(f"state dir:  {Path(args.state).resolve()} (mode 0700)")
    return 0


def _register(args: argparse.Namespace) -> int:
    from firmware.identity import IdentityError, load
    from firmware.sync.trustsync import RegistrationError, public_key_from_b64, register_device

    try:
        identity = load(Path(args.state))
    except IdentityError as exc:
        print(f"error: {exc} (run `healthgate-provision init` first)")
        return 1
    try:
        public_key_from_b64(args.fleet_key)
    except Exception as exc:
        print(f"error: --fleet-key is not a base64 Ed25519 public key ({exc})")
        return 1
    try:
        register_device(args.fleet, args.token, identity.device_id, identity.key)
    except RegistrationError as exc:
        print(f"error: registration refused: {exc}")
        return 1
    pinned = Path(args.state) / FLEET_KEY_FILE
    pinned.write_text(args.fleet_key.strip() + "\n")
    pinned.chmod(0o600)
    print(f"registered {identity.device_id} with {args.fleet}; fleet key pinned in {pinned}")
    return 0


def _template_key(args: argparse.Namespace) -> int:
    import os

    from firmware.vision.record_template import TemplateKeyring

    if args.generate == (args.import_b64 is not None):
        print("error: give exactly one of --generate or --import-b64")
        return 2
    try:
        key = os.urandom(32) if args.generate else base64.b64decode(args.import_b64, validate=True)
        path = TemplateKeyring(Path(args.state) / "template-keys").install(args.id, key)
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    print(f"template key {args.id!r} installed in {path} (mode 0600)")
    if args.generate:
        # shown once, for the fleet's sealing tool and the site's other kiosks
        print(f"key (base64): {base64.b64encode(key).decode()}")
    return 0


def _selftest(args: argparse.Namespace) -> int:
    from provisioning.selftest import run_selftest

    return run_selftest(Path(args.config), sys.stdout)


def _enrol(argv: list[str]) -> int:
    from provisioning import enrol

    return int(enrol.main(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("enrol", "erase"):
        return _enrol(args_list)
    parser = argparse.ArgumentParser(prog="healthgate-provision", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the device identity in the state directory")
    init.add_argument("--state", default="state")
    init.add_argument("--device-id", default=None, help="an id from the fleet operator")
    register = sub.add_parser("register", help="register with the fleet server, pin its key")
    register.add_argument("--state", default="state")
    register.add_argument("--fleet", required=True, help="fleet server URL")
    register.add_argument("--token", required=True, help="one-time enrolment token")
    register.add_argument("--fleet-key", required=True,
                          help="the fleet's trust-signing public key (healthgate-fleet keygen)")
    template_key = sub.add_parser("template-key",
                                  help="install the site key that opens enrolled templates")
    template_key.add_argument("--state", default="state")
    template_key.add_argument("--id", required=True, help="key id, as records name it")
    template_key.add_argument("--generate", action="store_true", help="create a new site key")
    template_key.add_argument("--import-b64", default=None, help="install a given key")
    selftest = sub.add_parser("selftest", help="check camera, display, clock, trust data, fleet")
    selftest.add_argument("--config", required=True)
    sub.add_parser("enrol", help="enrol an opted-in member's face (see --help of enrol)")
    sub.add_parser("erase", help="erase an enrolled member")
    args = parser.parse_args(args_list)
    handlers = {"init": _init, "register": _register, "selftest": _selftest,
                "template-key": _template_key}
    return handlers[args.command](args)


def pinned_fleet_key(state_dir: Path) -> str | None:
    """The pinned fleet key (base64) of a provisioned kiosk, or None."""
    try:
        value = (state_dir / FLEET_KEY_FILE).read_text().strip()
        base64.b64decode(value, validate=True)
        return value
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
