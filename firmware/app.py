"""Builds the kiosk's object graph from configuration, runs it, and tears it down cleanly."""
from __future__ import annotations

import argparse
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from firmware.camera import FrameSource, open_camera
from firmware.clihelp import HelpFormatter, example
from firmware.clock import Clock
from firmware.config import Config, ConfigError, load_config
from firmware.credentials import TrustStore
from firmware.display import open_display, screen_for
from firmware.eventlog import EventLog
from firmware.eventlog.outbox import Outbox
from firmware.eventlog.restart import open_or_restart
from firmware.kiosk.facestage import FaceStage
from firmware.fsutil import file_in_the_way, private_umask, unwritable_reason
from firmware.identity import DeviceIdentity, load
from firmware.kiosk.inbox import Message
from firmware.kiosk import Kiosk
from firmware.protocol.keys import public_key_from_b64
from firmware.kiosk.pseudonym import Pseudonymiser
from firmware.sdnotify import notify, watchdog_pinger
from firmware.setup.firstboot import FirstBootSetup, prepare as prepare_first_boot
from firmware.setup.provisioner import CodeProvisioner
from firmware.statefolder import StateFolder
from firmware.status.report import StatusReporter, StatusSession
from firmware.trustprovider import TrustProvider
from firmware.vision.record_template import TemplateKeyring

if TYPE_CHECKING:
    from firmware.display.driver import Display
    from firmware.setup.provisioner import ProvisionOutcome
    from firmware.status.server import StatusServer
    from firmware.sync.trustworker import TrustSyncWorker
    from firmware.sync.uploader import Uploader
    from firmware.vision.matcher import Gallery
    from firmware.vision.pad import PresentationAttackDetector
    from firmware.vision.pipeline import FacePipeline

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SETUP = 2  # the configuration, the provisioning or the state folder must be fixed first


def pseudonym_secret(identity: DeviceIdentity) -> bytes:
    """A pseudonym secret derived from the device key: never stored, never leaves the kiosk."""
    raw = identity.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"healthgate pseudonym v1").derive(raw)


@dataclass
class KioskApp:
    """Everything one running kiosk owns; `close()` releases it in reverse order."""

    kiosk: Kiosk
    identity: DeviceIdentity
    eventlog: EventLog
    display: Display
    uploader: Uploader | None
    trust_worker: TrustSyncWorker | None = None
    status: StatusReporter | None = None
    status_server: StatusServer | None = None  # when status.listen

    def start_background(self) -> None:
        """One bounded trust-sync round first (so a freshly provisioned kiosk has trust data
        before its first customer), then uploads and periodic sync in their own threads; the
        trust store is loaded before the caller declares the service ready."""
        if self.trust_worker is not None:
            try:
                self.trust_worker.run_once()
            except Exception as exc:  # offline at boot is normal: the cache decides
                log.warning("initial trust sync failed: %s", exc)
            self.trust_worker.start(first_round_done=True)
        self.kiosk.warm_up()
        if self.uploader is not None:
            self.uploader.start()
        if self.status is not None:
            self.status.start()
        if self.status_server is not None:
            self.status_server.start()

    def flush_uploads(self, timeout_s: float = 10.0) -> int:
        """Upload what is pending, within `timeout_s` (when a replay run ends)."""
        if self.uploader is None:
            return 0
        self.uploader.stop(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        sent = 0
        while time.monotonic() < deadline and self.uploader.status().pending > 0:
            try:
                sent += self.uploader.upload_once()
            except Exception as exc:  # the events stay queued for the next run
                log.warning("final upload failed: %s", exc)
                break
        return sent

    def close(self) -> None:
        """Stop and release every part, even when one of them fails to close."""
        uploader = self.uploader
        steps: list[Callable[[], object] | None] = [
                 self.status.stop if self.status is not None else None,
                 self.trust_worker.stop if self.trust_worker is not None else None,
                 (lambda: uploader.stop(timeout=5.0)) if uploader is not None else None,
                 self.status_server.stop if self.status_server is not None else None,
                 self.display.close, self.eventlog.close]
        for step in steps:
            if step is None:
                continue
            try:
                step()
            except Exception:  # the event log must still be closed after a display error
                log.exception("closing a part failed")


def build(config: Config, *, camera: FrameSource | None = None,
          trust: Callable[[], TrustStore] | None = None, clock: Clock | None = None,
          render_display: bool = False,
          face_pipeline: FacePipeline | None = None) -> KioskApp:
    """Assemble a kiosk from configuration; injected parts replace the configured ones
    (injected trust data, as the demo and tests use, is not synced; an injected face pipeline
    saves loading the models a second time)."""
    state = Path(config.state.dir)
    identity = load(state)  # provisioning or first boot created it (see not_provisioned)
    folder = StateFolder(state)
    clock = clock or Clock(folder.last_seen)
    faces = build_face_stage(config, state, face_pipeline) if config.face.enabled else None
    eventlog = open_or_restart(folder.events_db, identity.key, identity.device_id, clock.now)
    display = None
    try:  # a part that fails to open must not leave the ones before it open
        outbox = Outbox(eventlog)  # the upload queue: the uploader and the status figures
        display = open_display(config.display.port, config.display.baudrate,
                               config.display.ack_timeout_s, config.display.max_retries,
                               config.display.heartbeat_s, render=render_display)
        uploader, trust_worker = None, None
        session = StatusSession()  # every fleet request says how this kiosk is doing
        if config.fleet.url:
            from firmware.sync.uploader import Uploader
            uploader = Uploader(outbox, config.fleet.url, identity.device_id, identity.key,
                                session=session,
                                batch_size=config.fleet.batch_size,
                                backoff_initial_s=config.fleet.backoff_initial_s,
                                backoff_max_s=config.fleet.backoff_max_s,
                                timeout_s=config.fleet.request_timeout_s,
                                poll_interval_s=config.fleet.upload_interval_s)
            if trust is None:
                trust_worker = _trust_worker(config, state, identity, clock, session)
        if trust is None:
            pinned = folder.pinned_fleet_key()
            trust = TrustProvider(folder.trust_dir, config.kiosk.country, config.kiosk.region,
                                  [public_key_from_b64(pinned)] if pinned else None,
                                  dcc_signer_validity=config.kiosk.dcc_signer_validity)
        kiosk = Kiosk(config.kiosk, camera or open_camera(config.camera), display, eventlog,
                      trust, clock,
                      Pseudonymiser(pseudonym_secret(identity),
                                    config.kiosk.pseudonym_key_rotation_h * 3600.0),
                      # the whole escalation ladder: a silent display is then declared dead at once
                      screen_for, display_timeout_s=display.config.ladder_s, faces=faces,
                      after_append=uploader.notify if uploader is not None else None,
                      watchdog=watchdog_pinger(),
                      # maintenance mode acts on provisioning codes (docs/provisioning.md)
                      provisioner=CodeProvisioner(state, clock=clock).handle,
                      bundle_source=_bundle_source(config, state, clock),
                      # first boot: waits for a code by itself (firmware/setup/firstboot.py)
                      setup=FirstBootSetup(folder) if folder.setup_pending.is_file() else None)
        # the loop's supervisor watches its capture thread; the network workers join it
        if uploader is not None:
            kiosk.supervisor.watch("uploader", uploader, blocks=False)  # only syncs
        if trust_worker is not None:
            kiosk.supervisor.watch("trust_sync", trust_worker, blocks=False)
        provider = trust
        status = StatusReporter(state, kiosk.status, lambda: provider().updated_at, uploader,
                                outbox.pending_count, config.kiosk.max_trust_age_h, clock.now)
        session.status_header = status.header
        status_server = build_status_server(config, kiosk, identity.device_id, display,
                                            eventlog, uploader, trust_worker, clock)
        return KioskApp(kiosk, identity, eventlog, display, uploader, trust_worker, status,
                        status_server)
    except BaseException:
        if display is not None:
            display.close()
        eventlog.close()
        raise


def build_status_server(config: Config, kiosk: Kiosk, device_id: str, display: Display,
                        eventlog: EventLog, uploader: Uploader | None,
                        trust_worker: TrustSyncWorker | None,
                        clock: Clock) -> StatusServer | None:
    """The status page when `status.listen` is set (bound now: a taken port fails at start)."""
    if not config.status.listen:
        return None
    from firmware.status.collect import StatusCollector, StatusParts
    from firmware.status.server import StatusServer, parse_listen

    parts = StatusParts(kiosk.status, device_id, display, eventlog.path, eventlog.quota_bytes,
                        uploader, StateFolder(Path(config.state.dir)).trust_dir, trust_worker,
                        clock, config.kiosk.max_trust_age_h, kiosk.supervisor)
    host, port = parse_listen(config.status.listen)
    return StatusServer(StatusCollector(parts), host, port, config.status.token)


class FaceModelError(RuntimeError):
    """The face models could not be loaded; the message says which and how to proceed."""


def load_face_pipeline(config: Config) -> FacePipeline:
    """Load the face models (once per process) as the configuration asks."""
    from firmware.vision import FacePipeline

    try:
        return FacePipeline(config.face.model_dir or None, num_threads=config.face.threads,
                            threshold=config.face.threshold or None)
    except Exception as exc:
        raise FaceModelError(f"face models failed to load ({exc}); fix face.model_dir or set "
                             "face.enabled = false to run without face checks") from exc


def load_pad(config: Config) -> PresentationAttackDetector:
    """The presentation-attack models (once per process), from face.model_dir or the shipped ones."""
    from firmware.vision.pad import MANIFEST_NAME, PresentationAttackDetector

    # a face model folder without PAD models of its own (tflite_models/dlib) uses the shipped ones
    folder = config.face.model_dir
    if folder and not (Path(folder) / MANIFEST_NAME).is_file():
        folder = ""
    try:
        return PresentationAttackDetector(folder or None, num_threads=config.face.threads)
    except Exception as exc:
        raise FaceModelError(f"presentation-attack models failed to load ({exc}); fix "
                             "face.model_dir, or set face.liveness and face.face_pass so that "
                             "they are not needed") from exc


def build_face_stage(config: Config, state: Path,
                     pipeline: FacePipeline | None = None) -> FaceStage:
    """The kiosk's face stage; with face pass on, the member gallery is decrypted into memory."""
    from firmware.kiosk.facecheck import FaceCheck

    # the PAD model: for liveness "model", and always for face pass (a face alone must be live)
    pad = load_pad(config) if config.face.liveness == "model" or config.face.face_pass else None
    check = FaceCheck(pipeline or load_face_pipeline(config), liveness=config.face.liveness,
                      anti_sharing_window_s=config.face.anti_sharing_window_s, pad=pad)
    gallery = load_member_gallery(config, state) if config.face.face_pass else None
    return FaceStage(check, config.face.timeout_s,
                     open_template=TemplateKeyring(StateFolder(state).template_keys_dir).open,
                     gallery=gallery,
                     face_pass_threshold=config.face.face_pass_threshold or None)


def load_member_gallery(config: Config, state: Path) -> Gallery | None:
    """The opted-in members' templates, decrypted into memory for 1:N (face pass). A gallery
    that cannot be read (tampered, wrong key) switches face pass off, loudly: members can
    still show their code, and nobody is admitted on a template that did not authenticate."""
    from firmware.vision.gallery import GalleryError, GalleryStore, load_or_create_key

    path = Path(config.face.gallery) if config.face.gallery else StateFolder(state).gallery
    try:
        gallery = GalleryStore(path, load_or_create_key(state)).load_gallery()
    except GalleryError as exc:
        log.error("face pass OFF: member gallery %s unusable: %s", path, exc)
        return None
    log.info("face pass: %d opted-in members loaded", len(gallery))
    return gallery


def _bundle_source(config: Config, state: Path,
                   clock: Clock) -> Callable[[], ProvisionOutcome | None] | None:
    """Maintenance mode imports an offline bundle from `fleet.bundle_dir`, when configured."""
    if not config.fleet.bundle_dir:
        return None
    folder = Path(config.fleet.bundle_dir)
    return lambda: CodeProvisioner(state, clock=clock).import_from_folder(folder)


def _trust_worker(config: Config, state: Path, identity: DeviceIdentity,
                  clock: Clock, session: StatusSession | None = None) -> TrustSyncWorker | None:
    """A trust-sync worker when the kiosk was provisioned with a pinned fleet key."""
    pinned = StateFolder(state).pinned_fleet_key()
    if pinned is None:
        log.warning("no pinned fleet key in %s: trust data will not be synced", state)
        return None
    from firmware.sync.trustsync import TrustSync
    from firmware.sync.trustworker import TrustSyncWorker

    sync = TrustSync(config.fleet.url, StateFolder(state).trust_dir, [public_key_from_b64(pinned)],
                     identity.device_id, identity.key, timeout_s=config.fleet.request_timeout_s,
                     session=session)
    return TrustSyncWorker(sync, clock, config.fleet.trust_sync_interval_s)


def not_provisioned(config: Config) -> str | None:
    """Why this kiosk must not start (one line naming the state folder and the commands to
    run), or None. A kiosk that invented its own identity would run and have every event
    refused by the fleet; one without a pinned fleet key would never get trust data."""
    state = Path(config.state.dir)
    blocker = file_in_the_way(state)
    if blocker is not None:
        return (f"state folder {state} cannot be used: {blocker} is a file, not a folder; fix "
                "state.dir (the folder healthgate-provision init set up)")
    if not StateFolder(state).has_identity():
        return (f"this kiosk is not provisioned: no device identity in {state}; run "
                f"`healthgate-provision init --state-dir {state}` and then "
                f"`healthgate-provision register --state-dir {state}` "
                f"(or `healthgate-provision init --state-dir {state} --fleet-key KEY` and show "
                "the kiosk a provisioning code; or set state.dir to the folder you provisioned)")
    if config.fleet.url and not StateFolder(state).fleet_key.is_file():
        return (f"this kiosk is not registered with {config.fleet.url}: no pinned fleet key "
                f"in {state}; run `healthgate-provision register --state-dir {state} "
                f"--fleet {config.fleet.url} --token ... --fleet-key ...` "
                "(or leave fleet.url empty for an offline kiosk)")
    reason = unwritable_reason(state)
    if reason is not None:
        return (f"state folder {state} is not writable ({reason}): the kiosk must write its "
                "event log there; give the service user write access to it")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="healthgate run", description="run the kiosk", formatter_class=HelpFormatter,
        epilog=f"exit codes: {EXIT_OK} stopped normally, {EXIT_SETUP} configuration, "
               "provisioning or state folder to fix (one line says what)\n\n"
               + example("healthgate run --config /etc/healthgate/kiosk.toml"))
    parser.add_argument("--config", required=True, help="TOML configuration file")
    parser.add_argument("--render", action="store_true", help="draw the emulated display here")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}")
        return EXIT_SETUP
    # Owner-only files (keys, logs, caches) even when started by hand; the unit sets UMask=0077.
    with private_umask():
        # first boot: an image's pinned fleet key and no identity yet (docs/provisioning.md)
        if prepare_first_boot(StateFolder(Path(config.state.dir))):
            log.info("first-boot setup: the kiosk waits for a provisioning code")
        problem = not_provisioned(config)
        if problem is not None:
            print(f"error: {problem}")
            return EXIT_SETUP
        return _run(config, args.render)


def _run(config: Config, render: bool) -> int:
    try:
        app = build(config, render_display=render)
    except FaceModelError as exc:
        print(f"error: {exc}")
        return EXIT_SETUP
    except Exception as exc:  # e.g. a damaged pinned fleet key: say what, not a traceback
        print(f"error: the kiosk could not start: {type(exc).__name__}: {exc}")
        return EXIT_SETUP
    log.info("kiosk %s starting; state folder %s", app.identity.device_id,
             Path(config.state.dir).resolve())
    signal.signal(signal.SIGTERM, lambda *_: app.kiosk.stop())
    # technician mode from the service manager: `systemctl kill -s USR1 healthgate` (USR2 leaves)
    signal.signal(signal.SIGUSR1, lambda *_: app.kiosk.post(Message("maintenance", True)))
    signal.signal(signal.SIGUSR2, lambda *_: app.kiosk.post(Message("maintenance", False)))
    app.start_background()
    notify("READY=1")  # the unit is Type=notify: systemd waits for this, then watches the loop
    replay = config.camera.source in ("files", "video") and not config.camera.loop
    try:
        summary = app.kiosk.run(exit_on_end_of_stream=replay)
        if replay:
            app.flush_uploads()
            print(f"{summary.decided} decisions ({summary.granted} granted); "
                  f"{summary.dropped_frames} stale frames dropped")
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return EXIT_OK
