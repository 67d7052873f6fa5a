"""`healthgate check TEXT_OR_IMAGE_FILE`: a technician's view of one verification, stage by stage.

This is the one place allowed to print credential contents (name, birth date, identifier):
a technician runs it by hand on a credential in front of them.
"""
from __future__ import annotations

import argparse
import io
import re
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from firmware.credentials.reasons import message_for
from firmware.credentials.trust import TrustStore
from firmware.credentials.verdict import STAGES, Verdict

MAX_INPUT_BYTES = 16 * 1024 * 1024  # an image file from a phone is a few MB at most
# A phone photo is 12-50 MP; the decoded RGB copy costs 3 bytes a pixel, so 50 MP is ~150 MB.
# The size is read from the image header, before any pixel is decoded (a 12,000 x 12,000 PNG
# of a few kilobytes would otherwise cost 1.6 GB).
MAX_IMAGE_PIXELS = 50_000_000
_MARK = {True: "ok", False: "FAIL", None: "-"}


class InputError(ValueError):
    """The argument is neither a credential text nor a usable file; the message says which."""


class ImageTooLarge(InputError):
    """The image's header declares more pixels than `MAX_IMAGE_PIXELS`: refused undecoded."""


def read_image_texts(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> list[str]:
    """Every code text in an image file's bytes (PNG, JPEG, ...); ValueError if not an image,
    ImageTooLarge if it declares more than `max_pixels` pixels (checked before decoding)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # our own, smaller bound decides; not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(f"image of {width} x {height} pixels is larger than "
                                    f"{max_pixels:,} pixels")
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as exc:  # Pillow's own (larger) bound, at open()
        raise ImageTooLarge(str(exc)) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None
    try:
        from firmware.codes import read_codes
    except ImportError:  # the kiosk's reader is not installed: use zxing-cpp directly
        return _zxing_texts(rgb)
    texts = read_codes(rgb)
    if not texts:  # a tight crop without quiet zone: retry on a padded copy
        padded = np.pad(rgb, ((40, 40), (40, 40), (0, 0)), constant_values=255)
        texts = read_codes(padded)
    return texts


def _zxing_texts(rgb: Any) -> list[str]:
    import zxingcpp
    found = zxingcpp.read_barcodes(rgb, formats=(zxingcpp.BarcodeFormat.QRCode, zxingcpp.BarcodeFormat.Aztec))
    return [b.text for b in found if b.valid]


# A credential text starts with its scheme (HC1:, shc:/, NZCP:/, HG1:, or an unknown one such
# as HC2:); anything else is taken as a file name, so a mistyped path is not "verified" as text.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,9}:")
KNOWN_PREFIXES = "HC1:, shc:/, NZCP:/ or HG1:"


def _inputs(target: str) -> list[str]:
    """The credential texts named by the argument: the text itself, an image file, or a text
    file holding a credential; InputError for anything else."""
    if _SCHEME.match(target):
        return [target]
    path = Path(target)
    try:
        is_dir = path.is_dir()
    except OSError:  # e.g. a name too long for a path: open() below says so
        is_dir = False
    if is_dir:
        raise InputError(f"{target} is a folder: give an image or text file, or the "
                         f"credential text ({KNOWN_PREFIXES}...)")
    try:
        with path.open("rb") as handle:  # never read more than the bound, whatever the size
            data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"no such file: {target} (a credential text starts with "
                         f"{KNOWN_PREFIXES})") from None
    except OSError as exc:
        raise InputError(f"cannot read {target}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise ImageTooLarge(f"{path} is larger than {MAX_INPUT_BYTES:,} bytes")
    try:
        return read_image_texts(data)
    except ImageTooLarge:
        raise
    except ValueError:
        pass
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = ""
    if not _SCHEME.match(text):
        raise InputError(f"{target} is not an image and holds no credential text (one that "
                         f"starts with {KNOWN_PREFIXES})")
    return [text]


def _parse_args(argv: list[str]) -> argparse.Namespace:
    from firmware.clihelp import HelpFormatter, example

    parser = argparse.ArgumentParser(
        prog="healthgate check", description="Verify one credential and show every stage.",
        formatter_class=HelpFormatter,
        epilog=example("healthgate demo --save samples",
                       "healthgate check samples/valid.txt --trust samples/trust",
                       "healthgate check photo-of-a-pass.jpg --trust /var/lib/healthgate/trust "
                       "--fleet-key KEY"))
    parser.add_argument("credential", help="credential text (HC1:..., shc:/..., ...) or an image/text file")
    parser.add_argument("--trust", metavar="DIR", help="trust data folder (signer list, rules, ...)")
    parser.add_argument("--at", metavar="ISO", help="validation time, ISO-8601 (default: now)")
    parser.add_argument("--fleet-key", metavar="B64", help="pinned fleet key (base64 Ed25519) "
                        "that signed the fleet envelopes in --trust (a kiosk's synced cache)")
    return parser.parse_args(argv)


def _print_verdict(verdict: Verdict, out: TextIO) -> None:
    state = "VALID" if verdict.valid else "INVALID"
    out.write(f"format: {verdict.format}\nverdict: {state}\n")
    if verdict.failure:
        out.write(f"reason: {verdict.failure} ({message_for(verdict.failure)})\n")
    details = verdict.extras.get("details", {}) if isinstance(verdict.extras, dict) else {}
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
    """Run the check; exit status 0 when every credential found is valid, 1 if not, 2 on misuse."""
    out = out or sys.stdout
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    from firmware.credentials import verify
    from firmware.credentials.dcc.clock import parse_iso8601

    try:
        at = parse_iso8601(args.at) if args.at else datetime.now(timezone.utc)
    except ValueError as exc:
        out.write(f"error: --at: {exc}\n")
        return 2
    try:
        texts = _inputs(args.credential)
    except InputError as exc:
        out.write(f"error: {exc}\n")
        return 2
    trust = TrustStore()
    from firmware.sync.trustsync import public_key_from_b64
    try:  # named on its own: "--trust: not base64" would send the technician to the folder
        pinned = [public_key_from_b64(args.fleet_key)] if args.fleet_key else None
    except ValueError as exc:
        out.write(f"error: --fleet-key: {exc}; give the key printed by `healthgate-fleet "
                  "keygen`\n")
        return 2
    if args.trust:
        from firmware.credentials.store import TrustDataError, load_trust_dir
        try:
            trust = load_trust_dir(args.trust, pinned_keys=pinned)
        except ValueError as exc:  # TrustDataError, or a --fleet-key that is not a key
            out.write(f"error: --trust: {exc}\n")
            return 2
    else:
        out.write("note: no --trust folder given: no issuer is trusted\n")
    if not texts:
        out.write("no code found in the image\n")
        return 1
    out.write(f"validation time: {at.isoformat()}\n")
    if trust.updated_at is not None:
        out.write(f"trust data updated: {trust.updated_at.isoformat()}\n")
    all_valid = True
    for index, text in enumerate(texts):
        if len(texts) > 1:
            out.write(f"--- code {index + 1} of {len(texts)} ---\n")
        verdict = verify(text, trust, at)
        _print_verdict(verdict, out)
        all_valid = all_valid and verdict.valid
    return 0 if all_valid else 1


if __name__ == "__main__":
    raise SystemExit(main())
