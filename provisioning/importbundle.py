"""`healthgate-provision import-bundle`: install an offline provisioning bundle (USB stick)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from provisioning.output import Output, add_output_options

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(command: Callable[..., argparse.ArgumentParser],
               add_state_dir_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the subcommand (called by provisioning/cli.py's parser)."""
    parser = command("import-bundle", "install an offline provisioning bundle: trust data, "
                     "then registration if the fleet answers",
                     "healthgate-provision import-bundle /media/usb/healthgate-bundle.zip")
    add_state_dir_option(parser)
    add_output_options(parser, dry_run=False)  # a bundle is checked before anything is written
    parser.add_argument("bundle", type=Path,
                        help="the bundle file (healthgate-fleet bundle --out)")


def run(args: argparse.Namespace, out: Output) -> int:
    """Check and install the bundle; say what happened, and what to do next."""
    from firmware.credentials.reasons import message_for
    from firmware.setup.eventrecord import record_provisioning
    from firmware.setup.provisioner import CodeProvisioner

    provisioner = CodeProvisioner(Path(args.state))  # the kiosk's clock: its `last_seen`
    with out.step("checking and installing the bundle"):
        outcome = provisioner.import_bundle(args.bundle)
    out.result.update(bundle=str(args.bundle), trust_updated=outcome.trust_updated,
                      trust_wanted=outcome.trust_wanted,
                      registered=outcome.ok and outcome.reason is None)
    if not outcome.ok:
        return out.fail(EXIT_FAILED, outcome.reason or "PROVISION_FAILED",
                        f"bundle refused: {message_for(outcome.reason)} ({outcome.reason}: "
                        f"{outcome.detail})")
    out.say(f"trust data installed from {args.bundle}: {outcome.trust_updated} of "
            f"{outcome.trust_wanted} items (newer cached ones kept)")
    # the fleet learns of the import from the signed event log at the kiosk's next upload
    problem = record_provisioning(Path(args.state), outcome, provisioner.clock.now)
    out.result["event_logged"] = problem is None
    out.say("recorded in the event log; the fleet sees it at the next upload" if problem is None
            else f"warning: not recorded in the event log: {problem}")
    if outcome.reason is None:
        out.say(f"{outcome.detail} with the fleet; the bundle is used up")
        return EXIT_OK
    out.result["not_registered_reason"] = outcome.reason
    out.say(f"not registered yet: {message_for(outcome.reason)} ({outcome.detail}); once the "
            "kiosk is online, register it with a provisioning code or `healthgate-provision "
            "register` and a new token")
    return EXIT_OK
