"""Installation self-test: each part of a configured kiosk checked once, with a clear verdict.

The self-test is the acceptance test of an install: it passes only when `healthgate run` would
start and could admit someone. Every failure line says what to do.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from firmware.config import Config, ConfigError, load_config
from firmware.statefolder import StateFolder

if TYPE_CHECKING:
    import requests
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from firmware.credentials.trust import TrustStore

EXIT_PASSED, EXIT_FAILED = 0, 1


class CheckFailed(RuntimeError):
    """A check failed; the message says what is wrong and what to do."""


def _state(config: Config) -> str:
    from firmware.fsutil import file_in_the_way, unwritable_reason

    state = Path(config.state.dir)
    blocker = file_in_the_way(state)
    if blocker is not None:
        raise CheckFailed(f"state folder {state} cannot be used: {blocker} is a file, not a "
                          "folder; fix state.dir")
    if not state.is_dir():
        raise CheckFailed(f"state folder {state} does not exist: run `healthgate-provision "
                          f"init --state-dir {state}` (or fix state.dir)")
    reason = unwritable_reason(state)
    if reason is not None:
        raise CheckFailed(f"state folder {state} is not writable ({reason}): the kiosk writes "
                          "its event log there; give the kiosk's user write access to it")
    return f"{state} writable"


def _identity(config: Config) -> str:
    from firmware.identity import IdentityError, load

    state = Path(config.state.dir)
    try:
        return load(state).device_id
    except IdentityError as exc:
        raise CheckFailed(f"{exc}: run `healthgate-provision init --state-dir {state}`") \
            from None


def _camera(config: Config) -> str:
    from firmware.camera import open_camera

    camera = open_camera(config.camera)
    try:
        camera.start()
        frame = camera.read(max(2.0, config.kiosk.frame_timeout_s))
    finally:
        camera.close()
    if frame is None:
        raise CheckFailed("no frame within the timeout: check the camera cable and "
                          "camera.source")
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

    problem = Clock(StateFolder(Path(config.state.dir)).last_seen).trust_problem()
    if problem:
        raise CheckFailed(f"{problem}: set the time (NTP or RTC) before use")
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pinned_keys(state: Path) -> list[Ed25519PublicKey] | None:
    from firmware.protocol.keys import public_key_from_b64

    pinned = StateFolder(state).pinned_fleet_key()
    return [public_key_from_b64(pinned)] if pinned else None


def _cached_key_mismatch(folder: Path, pinned: list[Ed25519PublicKey] | None) -> str | None:
    """'pinned X, ... signed with Y' when a cached fleet envelope names another key."""
    from firmware.credentials.trust_json import is_envelope
    from firmware.protocol.keys import key_id

    if not pinned:
        return None
    ours = {key_id(key) for key in pinned}
    for path in sorted(folder.glob("*.json")):
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if is_envelope(document) and document.get("key_id") not in ours:
            return (f"fleet key mismatch: pinned {', '.join(sorted(ours))}, {path.name} is "
                    f"signed with {document.get('key_id')}")
    return None


def format_counts(store: TrustStore) -> dict[str, int]:
    """How many trusted signing keys each credential format has (0: that format is denied)."""
    return {
        "DCC": len(store.dcc_signers),
        "SHC": len(getattr(store.shc, "keys_by_kid", None) or {}),
        "NZCP": len(getattr(store.nzcp, "keys", None) or {}),
        "status": len(getattr(store.status, "keys", None) or {}),
    }


def _trust(config: Config) -> str:
    from firmware.credentials.store import load_trust_dir

    state = Path(config.state.dir)
    folder = StateFolder(state).trust_dir
    if not folder.is_dir():
        raise CheckFailed(f"no trust data cached yet in {folder}: connect the kiosk to the fleet and "
                          f"start it once, or install trust files there")
    pinned = _pinned_keys(state)
    mismatch = _cached_key_mismatch(folder, pinned)
    if mismatch:
        raise CheckFailed(f"{mismatch}: pin the key printed by `healthgate-fleet keygen` "
                          "(healthgate-provision register --force --fleet-key ...)")
    # loaded as the kiosk loads it: fleet envelopes must verify against the pinned fleet key
    store = load_trust_dir(folder, pinned_keys=pinned, country=config.kiosk.country or None,
                           region=config.kiosk.region or None)
    counts = format_counts(store)
    summary = ", ".join(f"{name} {count}" for name, count in counts.items())
    if not any(counts.values()):
        raise CheckFailed(f"no credential format has trust data ({summary} signing keys): "
                          "every credential would be denied; install the national DCC trust "
                          f"anchor in {folder / 'dcc-trust-anchors'} and sync, or publish "
                          "signer lists on the fleet")
    if store.problems:  # skipped data denies some holders: the technician must see it
        more = f" (+{len(store.problems) - 1} more: healthgate check --trust)" \
            if len(store.problems) > 1 else ""
        raise CheckFailed(f"trust data problem: {store.problems[0]}{more}")
    if store.updated_at is None:
        return f"signing keys: {summary}"
    hours = (datetime.now(timezone.utc) - store.updated_at).total_seconds() / 3600
    if hours > config.kiosk.max_trust_age_h:
        raise CheckFailed(f"trust data {hours:.0f} h old (limit {config.kiosk.max_trust_age_h} "
                          "h): connect the kiosk to the fleet so it can sync")
    return f"{hours:.1f} h old; signing keys: {summary}"


def _fleet(config: Config) -> str:
    import requests

    from firmware.sync.neterror import cannot_reach

    if not config.fleet.url:
        return "offline kiosk (fleet.url empty)"
    base = config.fleet.url.rstrip("/")
    try:
        response = requests.get(base + "/v1/time", timeout=config.fleet.request_timeout_s)
    except requests.RequestException as exc:
        raise CheckFailed(f"{cannot_reach(base, exc)}: check fleet.url, the network and that "
                          "the fleet server runs") from None
    response.raise_for_status()
    return f"reachable, server time {response.json().get('now')}; " + _fleet_key(config, base)


def _fleet_key(config: Config, base: str) -> str:
    """Fetch one published envelope as this device and verify it with the pinned key."""
    import requests

    from firmware.identity import IdentityError, load
    from firmware.protocol.envelope import DEFAULT_TRUST_NAMES, EnvelopeError, verify_envelope
    from firmware.protocol.keys import key_id
    from firmware.protocol.request_signing import sign_request

    state = Path(config.state.dir)
    pinned = _pinned_keys(state)
    if not pinned:
        raise CheckFailed(f"no pinned fleet key in {state}: run `healthgate-provision register "
                          f"--state-dir {state} --fleet {base} ...`")
    try:
        identity = load(state)
    except IdentityError:
        raise CheckFailed("cannot ask the fleet without a device identity (see identity)") \
            from None
    for name in DEFAULT_TRUST_NAMES:
        path = f"/v1/trust/{name}"
        headers = sign_request(identity.key, identity.device_id, "GET", path, b"")
        response = requests.get(base + path, headers=headers,
                                timeout=config.fleet.request_timeout_s)
        if response.status_code == 404:
            continue
        if response.status_code == 401:
            code = _error_code(response)
            todo = ("set the clock (NTP or RTC)" if code == "AUTH_STALE_TIMESTAMP" else
                    f"register it with `healthgate-provision register --state-dir {state}`")
            raise CheckFailed(f"the fleet refused device {identity.device_id} ({code}): {todo}")
        response.raise_for_status()
        try:
            verify_envelope(response.content, pinned, expected_name=name)
        except EnvelopeError as exc:
            signer = _envelope_key_id(response.content)
            raise CheckFailed(
                f"fleet key mismatch: pinned {', '.join(key_id(k) for k in pinned)}, fleet "
                f"signs with {signer} ({exc.code}): pin the key printed by "
                "`healthgate-fleet keygen` (healthgate-provision register --force "
                "--fleet-key ...)") from None
        return f"{name} verifies with the pinned key"
    return "nothing published on the fleet yet"


def _error_code(response: requests.Response) -> str:
    try:
        return str(response.json().get("error"))
    except ValueError:
        return f"HTTP {response.status_code}"


def _envelope_key_id(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("key_id"))
    except (ValueError, AttributeError):
        return "an unreadable envelope"


CHECKS: list[tuple[str, Callable[[Config], str]]] = [
    ("state", _state), ("identity", _identity), ("clock", _clock), ("camera", _camera),
    ("display", _display), ("trust data", _trust), ("fleet", _fleet),
]
# What to do when a check fails with an error that does not say so itself.
ADVICE = {
    "camera": "check the camera cable and camera.source",
    "display": "check the display cable and display.port",
    "trust data": "delete the damaged file from the trust folder and let the kiosk sync",
    "fleet": "check fleet.url and that the fleet server runs",
    "clock": "set the time (NTP or RTC)",
    "state": "check state.dir",
    "identity": "run healthgate-provision init",
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str  # what was found, or what is wrong and what to do


def run_checks(config_path: Path,
               starting: Callable[[str], None] = lambda name: None) -> list[CheckResult]:
    """Every check, in order (`starting(name)` is called as each begins: progress display);
    a configuration that does not load is the one result "configuration"."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return [CheckResult("configuration", False, str(exc))]
    results = []
    for name, check in CHECKS:
        starting(name)
        try:
            results.append(CheckResult(name, True, check(config)))
        except CheckFailed as exc:
            results.append(CheckResult(name, False, str(exc)))
        except Exception as exc:  # every failure is reported, none stops the others
            results.append(CheckResult(name, False,
                                       f"{type(exc).__name__}: {exc}; {ADVICE[name]}"))
    return results


def result_line(result: CheckResult) -> str:
    """One plain line per check, as logs and scripts have always read them."""
    return f"{'ok  ' if result.ok else 'FAIL'} {result.name:11} {result.detail}"


def verdict(results: list[CheckResult]) -> str:
    failures = sum(1 for r in results if not r.ok)
    return "self-test passed" if failures == 0 else f"self-test: {failures} check(s) failed"


def run_selftest(config_path: Path, out: TextIO) -> int:
    """Run every check; prints one line each; returns 0 when all pass, 1 otherwise."""
    results = run_checks(config_path)
    for result in results:
        print(result_line(result), file=out)
    print(verdict(results), file=out)
    return EXIT_PASSED if all(r.ok for r in results) else EXIT_FAILED
