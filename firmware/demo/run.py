"""`healthgate demo`: demo credentials through the real kiosk loop, pty display and fleet server."""
from __future__ import annotations

import argparse
import logging
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from firmware.app import build, load_face_pipeline
from firmware.camera.files import ArraySource
from firmware.config import Config, parse_config
from firmware.demo.scenario import TEMPLATE_KEY_ID, Presentation, build_cast, build_frames, demo_face
from firmware.display.screen import Screen
from firmware.identity import load_or_create
from firmware.kiosk.policy import Decision
from firmware.statefolder import StateFolder

if TYPE_CHECKING:
    import numpy as np

    from firmware.app import KioskApp
    from firmware.protocol.event_codec import Event
    from firmware.sync.uploader import Uploader
    from firmware.vision.pipeline import FacePipeline
    from fleet.runner import ServerHandle

FPS = 15.0
DEMO_DEVICE_ID = "demo-kiosk"
FACE_TIMEOUT_S = 1.5
# Between two people the scene stays empty long enough for a face timeout plus the result
# on screen, so each person's frames reach the kiosk while it is ready for them.
GAP_S = FACE_TIMEOUT_S + 0.8
PROGRESS_POLL_S = 0.1  # how often the progress lines look for a new decision


@dataclass
class DemoResult:
    """What the demo observed end to end; `ok` when every check held."""

    presentations: list[Presentation]
    decisions: list[Decision]
    screens: list[Screen]
    server_events: list[Event]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def demo_config(state_dir: Path, fleet_url: str, faces: bool, status_listen: str = "") -> Config:
    return parse_config({
        "status": {"listen": status_listen},
        "kiosk": {"result_hold_s": 0.6, "scan_timeout_s": 2.0, "same_code_cooldown_s": 3.0},
        "camera": {"source": "fake", "fps": FPS},
        "display": {"port": "emulator", "ack_timeout_s": 0.3},
        "fleet": {"url": fleet_url},
        "face": {"enabled": faces, "timeout_s": FACE_TIMEOUT_S, "liveness": "advisory"},
        "state": {"dir": str(state_dir)},
    })


def _enrol(face: np.ndarray, pipeline: FacePipeline) -> np.ndarray:
    """The demo holder's template, as an enrolment station would compute it (memory only)."""
    template = pipeline.embed(face)
    if template is None:
        raise RuntimeError("the demo portrait has no usable face")
    return template


def run_demo(workdir: Path, out: TextIO = sys.stdout, render: bool = False,
             faces: bool = True, serve: Callable[[dict[str, str]], None] | None = None,
             host: str = "127.0.0.1") -> DemoResult:
    """Run the whole path once in `workdir` (state, fleet database); returns what happened.
    With `serve`, the fleet dashboard (the demo kiosk plus a few seeded ones) and the kiosk's
    status page stay up after the run while `serve(addresses)` runs."""
    from firmware.sync.trustsync import register_device
    from firmware.vision.record_template import TemplateKeyring
    from fleet.runner import run_in_thread
    from fleet.tokens import new_token
    from fleet.server import create_app

    now = datetime.now(timezone.utc)
    face = demo_face() if faces else None
    if faces and face is None:
        print("note: scikit-image is not installed (pip install 'healthgate[demo]'), so the "
              "demo runs without a face in view and without face checks", file=out)
    # the face models are loaded once: for the demo's enrolment and then for the kiosk
    pipeline = load_face_pipeline(demo_config(workdir / "state", "", faces=True)) \
        if face is not None else None
    cast = build_cast(now, _enrol(face, pipeline) if face is not None and pipeline is not None
                      else None)
    presentations = cast.presentations
    frames = build_frames(presentations, face, gap_frames=int(FPS * GAP_S), code_frames=int(FPS))
    state = workdir / "state"
    # the demo is its own technician: it provisions the kiosk's identity, as `init` would
    load_or_create(state, DEMO_DEVICE_ID)
    if face is not None:
        TemplateKeyring(StateFolder(state).template_keys_dir).install(TEMPLATE_KEY_ID, cast.template_key)
    server = run_in_thread(create_app(str(workdir / "fleet.db")), host=host)
    try:
        token = new_token()
        server.store.add_token(token, now + timedelta(hours=1))
        config = demo_config(state, server.url, faces=face is not None,
                             status_listen=f"{host}:0" if serve is not None else "")
        app = build(config, camera=ArraySource(frames, fps=FPS), trust=lambda: cast.trust,
                    render_display=render, face_pipeline=pipeline)
        try:
            register_device(server.url, token, app.identity.device_id, app.identity.key)
            print(f"kiosk {app.identity.device_id} registered with fleet server {server.url}",
                  file=out)
            emulator = app.display.emulator
            if emulator is None:
                raise RuntimeError("the demo display has no emulator")
            print(f"display emulator on {emulator.port}; "
                  f"{len(presentations)} people in the queue; face checks "
                  f"{'on' if face is not None else 'off'}\n", file=out)
            decided = app.kiosk.summary.decisions
            emulator.caption = lambda: _scenario(presentations, len(decided))
            with _progress(presentations, decided, out):
                summary = app.kiosk.run(exit_on_end_of_stream=True)
            screens = list(emulator.screens)
            uploaded = _drain(app.uploader) if app.uploader is not None else 0
            server_events = [e for e in server.store.events(app.identity.device_id)]
            if serve is not None:
                serve(_serve_demo(server, app, out))
        finally:
            app.close()
    finally:
        server.stop()
    result = DemoResult(presentations, list(summary.decisions), screens, server_events)
    _check(result, uploaded)
    _report(result, summary.dropped_frames, out)
    return result


def _scenario(presentations: list[Presentation], decided: int) -> str:
    """The label of the person in front of the kiosk: the first one not decided yet."""
    if decided >= len(presentations):
        return "end of the queue"
    return f"{decided + 1}/{len(presentations)} {presentations[decided].label}"


@contextmanager
def _progress(presentations: list[Presentation], decisions: Sequence[Decision],
              out: TextIO) -> Iterator[None]:
    """Print each decision as the kiosk takes it, from a thread watching the list the kiosk
    appends to (the loop stays as it is in a real kiosk)."""
    stop = threading.Event()

    def watch() -> None:
        shown = 0
        while True:
            stopping = stop.wait(PROGRESS_POLL_S)
            while shown < min(len(decisions), len(presentations)):
                decision = decisions[shown]
                outcome = "GRANTED" if decision.granted else f"DENIED {decision.reason}"
                print(f"[{shown + 1}/{len(presentations)}] {presentations[shown].label}: "
                      f"{outcome}", file=out, flush=True)
                shown += 1
            if stopping:
                return

    thread = threading.Thread(target=watch, name="demo-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _serve_demo(server: ServerHandle, app: KioskApp, out: TextIO) -> dict[str, str]:
    """Seed a few more kiosks, add a demo operator and print where to look."""
    from firmware.protocol.timestamps import rfc3339, utc_now
    from fleet.dashboard.auth import add_operator
    from fleet.dashboard.demo import seed_demo_fleet

    seed_demo_fleet(server.store)
    password = secrets.token_urlsafe(12)
    add_operator(server.store, "demo", password, rfc3339(utc_now()))
    status_server = app.status_server
    if status_server is None:
        raise RuntimeError("the demo kiosk has no status page")
    status_server.start()
    addresses = {"dashboard": server.url + "/dashboard/", "operator": "demo",
                 "password": password, "kiosk_status": status_server.url}
    print(f"\nfleet dashboard: {addresses['dashboard']} (log in as demo / {password})\n"
          f"kiosk status page: {addresses['kiosk_status']}\n"
          f"fleet metrics: {server.url}/metrics; kiosk metrics: "
          f"{addresses['kiosk_status']}metrics", file=out)
    return addresses


def _wait_for_interrupt(_: dict[str, str]) -> None:
    print("serving until Ctrl-C", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _drain(uploader: Uploader, timeout_s: float = 20.0) -> int:
    """Upload until nothing is pending (the demo's network is loopback and always up)."""
    from firmware.sync.uploader import UploadError

    total, deadline = 0, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            total += uploader.upload_once()
        except UploadError:  # a transient failure: try again until the deadline
            time.sleep(0.2)
            continue
        if uploader.status().pending == 0:
            break
    return total


def _check(result: DemoResult, uploaded: int) -> None:
    if len(result.decisions) != len(result.presentations):
        result.problems.append(f"expected {len(result.presentations)} decisions, "
                               f"got {len(result.decisions)}")
    for item, decision in zip(result.presentations, result.decisions):
        if decision.granted != item.expect_granted or (
                item.expect_reason_prefix and not (decision.reason or "").startswith(
                    item.expect_reason_prefix)):
            result.problems.append(f"{item.label}: expected "
                                   f"{'GRANTED' if item.expect_granted else item.expect_reason_prefix}"
                                   f", got {'GRANTED' if decision.granted else decision.reason}")
    shown = [s.state for s in result.screens if s.state in ("GRANTED", "DENIED")]
    wanted = ["GRANTED" if d.granted else "DENIED" for d in result.decisions]
    if shown != wanted:
        result.problems.append(f"display showed {shown}, decisions were {wanted}")
    on_server = [e for e in result.server_events if e.kind == "decision"]
    if len(on_server) != len(result.decisions):
        result.problems.append(f"server holds {len(on_server)} decisions, kiosk made "
                               f"{len(result.decisions)}")


def _report(result: DemoResult, dropped: int, out: TextIO) -> None:
    print("decisions:", file=out)
    for index, (item, decision) in enumerate(zip(result.presentations, result.decisions), 1):
        outcome = "GRANTED" if decision.granted else f"DENIED  {decision.reason}"
        print(f"  {index}. {item.label:48} -> {outcome:30} {decision.latency_ms:7.1f} ms",
              file=out)
    granted = sum(d.granted for d in result.decisions)
    print(f"\nsummary: {len(result.decisions)} decisions ({granted} granted, "
          f"{len(result.decisions) - granted} denied); {len(result.screens)} screens acknowledged "
          f"by the display; {len(result.server_events)} signed events on the fleet server; "
          f"{dropped} stale frames dropped", file=out)
    for problem in result.problems:
        print(f"PROBLEM: {problem}", file=out)
    print("demo OK" if result.ok else "demo FAILED", file=out)


def _save(folder: Path) -> int:
    from firmware.demo.samples import TRUST_FOLDER, save_samples

    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        print(f"error: {folder} exists and is not an empty folder; give a new one")
        return 2
    samples = save_samples(folder, datetime.now(timezone.utc))
    for sample in samples:
        print(f"  {folder / sample.file}  ({sample.what}: {sample.verdict})")
    print(f"trust folder: {folder / TRUST_FOLDER}\ntry: healthgate check "
          f"{folder / samples[0].file} --trust {folder / TRUST_FOLDER}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from firmware.clihelp import HelpFormatter, example

    parser = argparse.ArgumentParser(
        prog="healthgate demo", description=__doc__, formatter_class=HelpFormatter,
        epilog=example("healthgate demo", "healthgate demo --save samples",
                       "healthgate check samples/expired.txt --trust samples/trust"))
    parser.add_argument("--save", metavar="DIR", type=Path, default=None,
                        help="write sample credentials (valid, expired, revoked, forged, ...) "
                             "and the trust folder that checks them into DIR, then stop")
    parser.add_argument("--no-render", dest="render", action="store_false",
                        help="do not draw the emulated LED display in the terminal")
    parser.add_argument("--verbose", action="store_true", help="log every state transition")
    parser.add_argument("--no-faces", dest="faces", action="store_false",
                        help="credentials only: no face in view, no face checks")
    parser.add_argument("--serve", action="store_true",
                        help="afterwards keep the fleet dashboard and the kiosk status page "
                             "running with the demo's data (until Ctrl-C) and print their addresses")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on with --serve (e.g. 0.0.0.0 for the LAN)")
    args = parser.parse_args(argv)
    if args.save is not None:
        return _save(args.save)
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="healthgate-demo-") as tmp:
        result = run_demo(Path(tmp), render=args.render, faces=args.faces,
                          serve=_wait_for_interrupt if args.serve else None, host=args.host)
    return 0 if result.ok else 1
