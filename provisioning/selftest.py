"""Installation self-test: each part of a configured kiosk checked once, with a clear verdict."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from firmware.config import Config, ConfigError, load_config


def _camera(config: Config) -> str:
    from firmware.camera import open_camera

    camera = open_camera(config.camera)
    try:
        camera.start()
        frame = camera.read(max(2.0, config.kiosk.frame_timeout_s))
    finally:
        camera.close()
    if frame is None:
        raise RuntimeError("no frame within the timeout")
    height, width = frame.image.shape[:2]
    return f"frame {width}x{height}"


def _display(config: Config) -> str:
    from firmware.display import open_display, screen_for

    with open_display(config.display.port, config.display.baudrate, config.display.ack_timeout_s,
                      config.display.max_retries, config.display.heartbeat_s) as display:
        display.show(screen_for("MAINTENANCE", None, "self-test"), timeout=3.0)
    return f"acknowledged on {config.display.port}"


def _clock(config: Config) -> str:
    from firmware.clock import Clock

    problem = Clock(Path(config.state.dir) / "last_seen").trust_problem()
    if problem:
        raise RuntimeError(f"{problem}: set the time (NTP or RTC) before use")
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _identity(config: Config) -> str:
    from firmware.identity import load

    return load(Path(config.state.dir)).device_id


def _trust(config: Config) -> str:
    from firmware.credentials.store import load_trust_dir
    from firmware.sync.trustsync import public_key_from_b64
    from provisioning.cli import pinned_fleet_key

    state = Path(config.state.dir)
    folder = state / "trust"
    if not folder.is_dir():
        raise RuntimeError("no trust data cached yet: connect to the fleet and sync")
    pinned = pinned_fleet_key(state)
    # loaded as the kiosk loads it: fleet envelopes must verify against the pinned fleet key
    store = load_trust_dir(folder, pinned_keys=[public_key_from_b64(pinned)] if pinned else None,
                           country=config.kiosk.country or None,
                           region=config.kiosk.region or None)
    if store.problems:  # skipped data denies some holders: the technician must see it
        more = f" (+{len(store.problems) - 1} more: healthgate check --trust)" \
            if len(store.problems) > 1 else ""
        raise RuntimeError(f"trust data problem: {store.problems[0]}{more}")
    if store.updated_at is None:
        raise RuntimeError("no trust data cached yet: connect to the fleet and sync")
    hours = (datetime.now(timezone.utc) - store.updated_at).total_seconds() / 3600
    if hours > config.kiosk.max_trust_age_h:
        raise RuntimeError(f"trust data {hours:.0f} h old (limit {config.kiosk.max_trust_age_h} h)")
    return f"{hours:.1f} h old, {len(store.dcc_signers)} DCC signer kids"


def _fleet(config: Config) -> str:
    import requests

    if not config.fleet.url:
        return "offline kiosk (fleet.url empty)"
    response = requests.get(config.fleet.url.rstrip("/") + "/v1/time",
                            timeout=config.fleet.request_timeout_s)
    response.raise_for_status()
    return f"reachable, server time {response.json().get('now')}"


CHECKS: list[tuple[str, Callable[[Config], str]]] = [
    ("identity", _identity), ("clock", _clock), ("camera", _camera), ("display", _display),
    ("trust data", _trust), ("fleet", _fleet),
]


def run_selftest(config_path: Path, out: TextIO) -> int:
    """Run every check; prints one line each; returns 0 when all pass, 1 otherwise."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"FAIL configuration: {exc}", file=out)
        return 1
    failures = 0
    for name, check in CHECKS:
        try:
            detail = check(config)
        except Exception as exc:  # every failure is reported, none stops the others
            failures += 1
            print(f"FAIL {name:11} {type(exc).__name__}: {exc}", file=out)
        else:
            print(f"ok   {name:11} {detail}", file=out)
    print("self-test passed" if failures == 0 else f"self-test: {failures} check(s) failed",
          file=out)
    return 0 if failures == 0 else 1
