"""Face enrolment of opted-in members: images -> one encrypted template; erase on request.

Images are decoded in memory and dropped; only the encrypted gallery file is ever written.
Failures name the image by its position (never by file name: names often identify people).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence, Union

import numpy as np

from firmware.clihelp import HelpFormatter, add_version, example
from firmware.statefolder import StateFolder
from firmware.vision.gallery import (
    GalleryError,
    GalleryStore,
    load_key,
    load_or_create_key,
)
from firmware.vision.matcher import TemplateError, normalise_template
from firmware.vision.quality import QualityConfig, assess
from firmware.vision.types import Face
from provisioning.cli import add_state_dir_option
from provisioning.output import Output, add_output_options, parse_args, run_handler

# an image to enrol: a file's path, or an RGB uint8 array already in memory
ImageInput = Union[str, "os.PathLike[str]", np.ndarray]

# Stable reason codes (per image, and for the enrolment as a whole).
UNREADABLE_IMAGE = "UNREADABLE_IMAGE"
EMBEDDING_FAILED = "EMBEDDING_FAILED"
NOT_ENOUGH_IMAGES = "NOT_ENOUGH_IMAGES"
INCONSISTENT_FACES = "INCONSISTENT_FACES"
GALLERY_ERROR = "GALLERY_ERROR"

MAX_IMAGE_BYTES = 40 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000


class EnrolPipeline(Protocol):
    """What enrolment needs from `firmware.vision.FacePipeline`."""

    threshold: float

    def detect(self, rgb: np.ndarray) -> list[Face]: ...

    def embed_face(self, rgb: np.ndarray, face: Face) -> np.ndarray: ...


@dataclass
class EnrolResult:
    member_id: str
    enrolled: bool
    reason: str | None
    used_images: int
    failures: list[tuple[int, str]] = field(default_factory=list)  # (image position, reason)
    min_pair_similarity: float | None = None


def _load_rgb(item: object) -> np.ndarray:
    """An RGB uint8 array from a path or an array, in memory only; ValueError if unusable."""
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            raise ValueError("array is not an RGB uint8 image")
        return item
    if not isinstance(item, (str, os.PathLike)):
        raise ValueError("not a path or an image array")
    from PIL import Image, UnidentifiedImageError

    path = Path(item)
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ValueError("image file too large")
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError("image has too many pixels")
            return np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image: {type(exc).__name__}") from None


def templates_from_images(
    images: Sequence[ImageInput], pipeline: EnrolPipeline, quality: QualityConfig | None = None,
    starting: Callable[[int], None] = lambda position: None,
) -> tuple[list[np.ndarray], list[tuple[int, str]]]:
    """One unit template per usable image; failures as (position, reason). `starting(position)`
    is called as each image begins (progress display: by position, never by file name)."""
    templates: list[np.ndarray] = []
    failures: list[tuple[int, str]] = []
    for position, item in enumerate(images):
        starting(position)
        try:
            rgb = _load_rgb(item)
        except ValueError:
            failures.append((position, UNREADABLE_IMAGE))
            continue
        try:
            faces = pipeline.detect(rgb)
        except ValueError:
            failures.append((position, UNREADABLE_IMAGE))
            continue
        verdict = assess(rgb, faces, quality)
        if not verdict.ok or verdict.face is None:
            failures.append((position, verdict.reason or EMBEDDING_FAILED))
            continue
        try:
            templates.append(normalise_template(pipeline.embed_face(rgb, verdict.face)))
        except (ValueError, TemplateError):
            failures.append((position, EMBEDDING_FAILED))
        finally:
            del rgb  # the image goes as soon as its template exists
    return templates, failures


def mean_template(templates: list[np.ndarray]) -> np.ndarray:
    """The normalised mean of unit templates (the usual way to pool several shots)."""
    return normalise_template(np.mean(np.stack(templates), axis=0))


def enrol(
    images: Sequence[ImageInput],
    member_id: str,
    gallery_path: str | Path,
    key: bytes,
    pipeline: EnrolPipeline,
    quality: QualityConfig | None = None,
    min_images: int = 1,
    starting: Callable[[int], None] = lambda position: None,
    store: bool = True,
) -> EnrolResult:
    """Enrol `member_id` from its images into the encrypted gallery at `gallery_path`.

    Every image passes the kiosk's quality gates; all accepted images must show the same person
    (each pair at or above the pipeline's threshold), otherwise nothing is stored. With
    `store=False` (a dry run) everything is checked and nothing written: `enrolled` then says
    that it would have been.
    """
    if not isinstance(member_id, str) or not member_id.strip():
        raise ValueError("member_id must be a non-empty string")
    templates, failures = templates_from_images(images, pipeline, quality, starting)
    result = EnrolResult(member_id, False, None, len(templates), failures)
    if len(templates) < max(min_images, 1):
        result.reason = NOT_ENOUGH_IMAGES
        return result
    if len(templates) > 1:
        stacked = np.stack(templates)
        pairs = stacked @ stacked.T
        result.min_pair_similarity = float(pairs[np.triu_indices(len(templates), 1)].min())
        if result.min_pair_similarity < pipeline.threshold:
            result.reason = INCONSISTENT_FACES
            return result
    try:
        gallery = GalleryStore(gallery_path, key)
        if store:
            gallery.put(member_id, mean_template(templates))
        elif Path(gallery_path).exists():
            gallery.read_records()  # the dry run opens the gallery as the real put would
    except (GalleryError, OSError) as exc:
        result.reason = GALLERY_ERROR
        print(f"error: gallery not updated: {exc}", file=sys.stderr)
        return result
    result.enrolled = True
    return result


def erase(member_id: str, gallery_path: str | Path, key: bytes) -> bool:
    """Remove a member's template from the encrypted gallery; True if it was there."""
    return GalleryStore(gallery_path, key).erase(member_id)


def _key(args: argparse.Namespace, gallery_path: Path) -> bytes:
    """The gallery key. A new one is created only for a new gallery in an existing state
    folder: a new key can never open an existing gallery, and a mistyped --state-dir must not
    quietly start a second gallery somewhere else."""
    if args.key_file:
        return load_key(args.key_file)
    state = Path(args.state)
    key_path = StateFolder(state).gallery_key
    if key_path.exists() or args.command == "erase" or gallery_path.exists():
        if not key_path.exists():
            raise GalleryError(f"no gallery key {key_path}"
                               + (f" for the gallery {gallery_path}: restore the key (a new one "
                                  "cannot open it)" if gallery_path.exists() else ""))
        return load_key(key_path)
    if not state.is_dir():
        raise GalleryError(f"no state folder {state}: run `healthgate-provision init "
                           f"--state-dir {state}` first, or give --key-file and --gallery")
    return load_or_create_key(state)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthgate-provision", description=__doc__)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("enrol", "enrol an opted-in member from face images"),
                       ("erase", "erase a member's template from the gallery")):
        cmd = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter,
                             epilog=example(f"healthgate-provision {name} --member M-1042"
                                            + (" --consent face1.jpg face2.jpg"
                                               if name == "enrol" else "")))
        cmd.add_argument("--member", required=True, help="member id (stored encrypted)")
        add_state_dir_option(cmd)
        add_output_options(cmd)
        cmd.add_argument("--key-file", default=None,
                         help=f"32-byte gallery key file (instead of STATE/{StateFolder.GALLERY_KEY})")
        cmd.add_argument("--gallery", default=None,
                         help=f"encrypted gallery file (default: STATE/{StateFolder.GALLERY})")
        if name == "enrol":
            cmd.add_argument("--consent", action="store_true",
                             help="confirm the member opted in to having their face template stored")
            cmd.add_argument("--min-images", type=int, default=1,
                             help="usable face images needed to enrol")
            cmd.add_argument("images", nargs="+", help="face photos (read, never copied or kept)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`healthgate-provision enrol|erase ...`; exit 0 on success, 1 on refusal, 2 on usage."""
    args = parse_args(_parser(), list(sys.argv[1:] if argv is None else argv))
    if isinstance(args, int):
        return args
    out = Output.for_args(args.command, args, error_stream=sys.stderr)
    return out.finish(run_handler(_enrol_or_erase, args, out))


def _enrol_or_erase(args: argparse.Namespace, out: Output) -> int:
    folder = StateFolder(Path(args.state))
    gallery_path = Path(args.gallery) if args.gallery else folder.gallery
    out.result["gallery"] = str(gallery_path)
    if out.dry_run and args.command == "enrol" and not args.key_file \
            and not folder.gallery_key.exists() and not gallery_path.exists():
        if not Path(args.state).is_dir():  # what _key would refuse, without creating a key
            return out.fail(1, GALLERY_ERROR, f"no state folder {args.state}: run "
                            f"`healthgate-provision init --state-dir {args.state}` first, or "
                            "give --key-file and --gallery")
        out.would(f"create the gallery key {folder.gallery_key}")
        key = bytes(32)  # a new gallery: any key checks the images the same way
    else:
        try:
            key = _key(args, gallery_path)
        except (GalleryError, OSError) as exc:
            return out.fail(1, GALLERY_ERROR, str(exc))
    if args.command == "erase":
        return _erase(args, out, gallery_path, key)
    if not args.consent:
        return out.fail(2, "CONSENT_MISSING", "enrolment needs --consent (the member opted in)")
    from firmware.vision import FacePipeline

    with out.step("loading the face models"):
        pipeline = FacePipeline()
    with out.progress("enrolling", len(args.images)) as advance:
        result = enrol(args.images, args.member, gallery_path, key, pipeline,
                       min_images=args.min_images, store=not out.dry_run,
                       starting=lambda position: advance(f"image {position + 1}"))
    out.result.update(enrolled=result.enrolled and not out.dry_run,
                      used_images=result.used_images,
                      failures=[{"image": position + 1, "reason": reason}
                                for position, reason in result.failures])
    for position, reason in result.failures:
        out.say(f"image {position + 1}: {reason}")
    if not result.enrolled:
        return out.fail(1, result.reason or GALLERY_ERROR,
                        f"not enrolled: {result.reason} ({result.used_images} usable image(s))")
    if out.dry_run:
        out.would(f"store the template from {result.used_images} image(s) in {gallery_path}")
    else:
        out.say(f"enrolled from {result.used_images} image(s) into {gallery_path}")
    return 0


def _erase(args: argparse.Namespace, out: Output, gallery_path: Path, key: bytes) -> int:
    try:
        if out.dry_run:
            found = args.member in GalleryStore(gallery_path, key).read_records()
        else:
            found = erase(args.member, gallery_path, key)
    except (GalleryError, OSError) as exc:
        return out.fail(1, GALLERY_ERROR, str(exc))
    out.result["erased"] = found and not out.dry_run
    if not found:
        out.say("no such member; gallery unchanged")
        out.error = {"code": "MEMBER_NOT_FOUND", "message": "no such member; gallery unchanged"}
        return 1
    if out.dry_run:
        out.would(f"erase the member's template from {gallery_path}")
    else:
        out.say("erased")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
