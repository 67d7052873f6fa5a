"""`healthgate check DOCUMENT...`: a technician's view of one verification, stage by stage.

A document is what people carry: a QR image (PNG, JPEG), a PDF page, `shc:/` text (one chunk or
several, across arguments), a bare JWS, a `.smart-health-card` file, a FHIR `$health-cards-issue`
response, or `HC1:`/`NZCP:/`/`HG1:` text; given as a file or as the text itself. This is the one
place allowed to print credential contents (name, birth date, identifier): a technician runs it
by hand on a credential in front of them.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from firmware.credentials import containers
from firmware.credentials.containers import ContainerError, Found
from firmware.credentials.images import MAX_IMAGE_PIXELS, ImageTooLarge, read_image_texts
from firmware.credentials.reasons import message_for
from firmware.credentials.trust import (
    DCC_SIGNER_VALIDITY_POLICIES,
    DEFAULT_DCC_SIGNER_VALIDITY,
    TrustStore,
)
from firmware.credentials.verdict import STAGES, Verdict

__all__ = ["main", "read_image_texts", "ImageTooLarge", "MAX_IMAGE_PIXELS", "MAX_INPUT_BYTES"]

MAX_INPUT_BYTES = 16 * 1024 * 1024  # an image file from a phone is a few MB at most
# Longest text shown for a value taken from a credential or an argument (issuer, kid, path).
_MAX_SHOWN_CHARS = 200
_MARK = {True: "ok", False: "FAIL", None: "-"}


class UsageError(Exception):
    """A usage problem, reported in one line (exit 2, or 1 for an image without a code)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _read_argument(argument: str) -> bytes | str:
    """A file's bytes (read up to MAX_INPUT_BYTES and no further) or the argument as text.

    An argument that names no file is credential text only when it looks like one (a known
    prefix, a compact JWS, a `SCHEME:` code); otherwise it is a mistyped path.
    """
    path = Path(argument)
    try:
        exists, is_dir, is_file = path.exists(), path.is_dir(), path.is_file()
    except (OSError, ValueError):  # a long credential text is no valid path name; nor is a NUL
        exists = is_dir = is_file = False
    if not exists:
        if containers.looks_like_credential(argument):
            return argument
        raise UsageError(f"no such file: {_shown(argument)}")
    if is_dir:
        raise UsageError(f"is a directory: {_shown(argument)}")
    if not is_file:  # a fifo or a device would block or never end
        raise UsageError(f"not a regular file: {_shown(argument)}")
    try:
        with path.open("rb") as handle:  # never read more than the bound, whatever the file's size
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {_shown(argument)}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{_shown(argument)} is larger than {MAX_INPUT_BYTES:,} bytes")
    return data


def _unpack_argument(argument: str) -> tuple[str, list[Found]]:
    """The container and credential texts of one argument; UsageError names the argument."""
    document = _read_argument(argument)
    try:
        return containers.unpack(document)
    except ContainerError as exc:
        name = _shown(argument) if isinstance(document, bytes) else "the text"
        if exc.code == containers.DOCUMENT_NOT_CREDENTIAL:
            why = "" if exc.detail == "not a credential or image" else f" ({exc.detail})"
            raise UsageError(f"not a credential or image: {name}{why}") from None
        if exc.code == containers.DOCUMENT_NO_CODE:  # read fine, holds nothing: a negative answer
            raise UsageError(f"{exc.detail}: {name}", status=1) from None
        raise UsageError(f"{name}: {exc.detail}") from None


def _shown(text: str) -> str:
    """A value fit for one terminal line: control characters replaced, length capped."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:_MAX_SHOWN_CHARS])
    return clean + ("..." if len(text) > _MAX_SHOWN_CHARS else "")


def _parse_args(argv: list[str]) -> argparse.Namespace:
    from firmware.clihelp import HelpFormatter, example

    parser = argparse.ArgumentParser(
        prog="healthgate check",
        description="Verify the credentials in a document and show every stage.",
        formatter_class=HelpFormatter,
        epilog=example("healthgate demo --save samples",
                       "healthgate check samples/valid.txt --trust samples/trust",
                       "healthgate check card.png --trust trust/ --at 2025-06-01T12:00:00Z",
                       "healthgate check photo-of-a-pass.jpg --trust /var/lib/healthgate/trust "
                       "--fleet-key KEY"))
    parser.add_argument("documents", nargs="+", metavar="DOCUMENT",
                        help="credential text (HC1:..., shc:/..., a JWS, ...) or a file: QR image, "
                             "PDF, .smart-health-card, FHIR Parameters JSON, text; several are "
                             "read together (the chunks of one card)")
    parser.add_argument("--trust", metavar="DIR", help="trust data folder (signer list, rules, ...)")
    parser.add_argument("--at", metavar="ISO", help="validation time, ISO-8601 (default: now)")
    parser.add_argument("--fleet-key", metavar="B64", help="pinned fleet key (base64 Ed25519) "
                        "that signed the fleet envelopes in --trust (a kiosk's synced cache)")
    parser.add_argument("--dcc-signer-validity", choices=DCC_SIGNER_VALIDITY_POLICIES,
                        default=DEFAULT_DCC_SIGNER_VALIDITY,
                        help="how a DCC signing certificate's validity is judged, as the kiosk "
                             "setting kiosk.dcc_signer_validity (default: %(default)s)")
    return parser.parse_args(argv)


def _read_all(arguments: list[str]) -> tuple[str, list[Found]]:
    """The container names and the assembled credentials of every argument; UsageError."""
    from firmware.credentials.document import check_document_count, join_unpacked

    try:
        check_document_count(len(arguments))
    except ContainerError as exc:
        raise UsageError(exc.detail) from None
    unpacked = [_unpack_argument(argument) for argument in arguments]  # each names its argument
    try:
        return join_unpacked(unpacked)
    except ContainerError as exc:
        raise UsageError(exc.detail) from None


def _print_verdict(verdict: Verdict, out: TextIO) -> None:
    state = "VALID" if verdict.valid else "INVALID"
    extras = verdict.extras if isinstance(verdict.extras, dict) else {}
    out.write(f"container: {_shown(str(extras.get('container', '?')))}\n")
    if extras.get("note"):
        out.write(f"note: {_shown(str(extras['note']))}\n")
    out.write(f"format: {verdict.format}\n")
    # Not personal: who issued the code and with which key, as the code claims it.
    if isinstance(extras.get("issuer"), str):
        name = extras.get("issuer_name")
        named = f" ({name})" if isinstance(name, str) and name != extras["issuer"] else ""
        out.write(f"issuer: {_shown(extras['issuer'] + named)}\n")
    if isinstance(extras.get("kid"), str):
        out.write(f"kid: {_shown(extras['kid'])}\n")
    out.write(f"verdict: {state}\n")
    if verdict.failure:
        out.write(f"reason: {verdict.failure} ({message_for(verdict.failure)})\n")
    details = extras.get("details", {})
    out.write("stages:\n")
    for stage in STAGES:
        outcome = verdict.checks.get(stage)
        why = details.get(stage, "")
        out.write(f"  {stage:<11} {_MARK[outcome]:<4} {why}\n".rstrip() + "\n")
    for stage, outcome in verdict.checks.items():  # stages a format adds beyond the DCC set
        if stage not in STAGES:
            out.write(f"  {stage:<11} {_MARK.get(outcome, '?'):<4} {details.get(stage, '')}\n")
    if verdict.payload is not None:
        out.write("payload (shown to the technician only):\n")
        for key, value in verdict.payload.items():
            out.write(f"  {key}: {value}\n")


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run the check; exit status 0 when every credential found is valid, 1 if not (or no code
    in an image), 2 on a usage error (one line: a missing file, a bad option, ...)."""
    out = out or sys.stdout
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    from firmware.credentials.dcc.clock import parse_iso8601
    from firmware.credentials.document import verify_found

    try:
        at = parse_iso8601(args.at) if args.at else datetime.now(timezone.utc)
    except ValueError as exc:
        out.write(f"error: --at: {exc}\n")
        return 2
    try:  # before trust is loaded: a mistyped path is said in one line, nothing else
        container, found = _read_all(args.documents)
    except UsageError as exc:
        out.write(f"error: {exc}\n" if exc.status == 2 else f"{exc}\n")
        return exc.status
    trust = TrustStore()
    from firmware.protocol.keys import public_key_from_b64
    try:  # named on its own: "--trust: not base64" would send the technician to the folder
        pinned = [public_key_from_b64(args.fleet_key)] if args.fleet_key else None
    except ValueError as exc:
        out.write(f"error: --fleet-key: {exc}; give the key printed by `healthgate-fleet "
                  "keygen`\n")
        return 2
    if args.trust:
        from firmware.credentials.store import load_trust_dir
        try:
            trust = load_trust_dir(args.trust, pinned_keys=pinned)
        except ValueError as exc:  # TrustDataError, or a --fleet-key that is not a key
            out.write(f"error: --trust: {exc}\n")
            return 2
        # What the loaders skipped: the technician sees why some issuers' holders are denied.
        for problem in trust.problems:
            out.write(f"trust problem: {problem}\n")
    else:
        out.write("note: no --trust folder given: no issuer is trusted\n")
    trust.dcc_signer_validity = args.dcc_signer_validity
    out.write(f"document: {_shown(container)}, {len(found)} credential(s)\n")
    out.write(f"validation time: {at.isoformat()}\n")
    if trust.updated_at is not None:
        out.write(f"trust data updated: {trust.updated_at.isoformat()}\n")
    all_valid = True
    for index, item in enumerate(found):
        if len(found) > 1:
            out.write(f"--- code {index + 1} of {len(found)} ---\n")
        verdict = verify_found(item, trust, at)
        _print_verdict(verdict, out)
        all_valid = all_valid and verdict.valid
    return 0 if all_valid else 1


if __name__ == "__main__":
    raise SystemExit(main())
