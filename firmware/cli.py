"""`healthgate` command line: demo, run, status, check, log verify, display-emulator."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from firmware.clihelp import HelpFormatter, add_version, example

# subcommand -> (module, help). Each module has `main(argv) -> int`; imported only when chosen,
# so `healthgate --help` stays fast and a missing optional part only breaks its own command.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("firmware.demo.run", "run the whole kiosk path on demo credentials, offline"),
    "run": ("firmware.app", "run the kiosk from a TOML configuration"),
    "status": ("firmware.status.cli", "one line for the shop: state, trust age, uploads"),
    "check": ("firmware.credentials.check", "verify codes in an image, PDF, file or text"),
    "log": ("firmware.eventlog.cli", "event log tools: `healthgate log verify`"),
    "display-emulator": ("firmware.display.emulator", "emulate the LED display on a pty"),
}


EXAMPLE = example("healthgate demo",
                  "healthgate demo --save samples && healthgate check samples/valid.txt "
                  "--trust samples/trust",
                  "healthgate run --config /etc/healthgate/kiosk.toml",
                  "healthgate status")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="healthgate", description="healthgate kiosk",
                                     formatter_class=HelpFormatter, epilog=EXAMPLE)
    add_version(parser)
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to do")
    if not args or args[0] in ("-h", "--help"):
        parser.print_usage()
        print("\ncommands (each has --help):")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:18} {text}")
        print(f"\noptions:\n  --version          show the version\n\n{EXAMPLE}")
        return 0 if args else 2
    if args[0] == "--version":
        parser.parse_args(args)  # prints the version and exits 0
    if args[0] not in COMMANDS:
        parser.error(f"unknown command {args[0]!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
