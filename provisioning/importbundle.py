"""`healthgate-provision import-bundle`: install an offline provisioning bundle (USB stick)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(command: Callable[..., argparse.ArgumentParser],
               add_state_dir_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the subcommand (called by provisioning/cli.py's parser)."""
    parser = command("import-bundle", "install an offline provisioning bundle: trust data, "
                     "then registration if the fleet answers",
                     "healthgate-provision import-bundle /media/usb/healthgate-bundle.zip")
    add_state_dir_option(parser)
    parser.add_argument("bundle", type=Path,
                        help="the bundle file (healthgate-fleet bundle --out)")


def run(args: Any) -> int:
    """Check and install the bundle; one line on what happened, and what to do next."""
    from firmware.credentials.reasons import message_for
    from firmware.provisioner import CodeProvisioner

    outcome = CodeProvisioner(Path(args.state)).import_bundle(args.bundle)
    if not outcome.ok:
        print(f"error: bundle refused: {message_for(outcome.reason)} ({outcome.reason}: "
              f"{outcome.detail})")
        return EXIT_FAILED
    print(f"trust data installed from {args.bundle}: {outcome.trust_updated} of "
          f"{outcome.trust_wanted} items (newer cached ones kept)")
    if outcome.reason is None:
        print(f"{outcome.detail} with the fleet; the bundle is used up")
        return EXIT_OK
    print(f"not registered yet: {message_for(outcome.reason)} ({outcome.detail}); once the "
          "kiosk is online, register it with a provisioning code or `healthgate-provision "
          "register` and a new token")
    return EXIT_OK
