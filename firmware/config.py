"""Kiosk configuration: TOML loaded into typed sections, validated with errors naming the key."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints
from urllib.parse import urlsplit

from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")

# The one state folder: the example configuration, the systemd unit, the docs and every
# command's default name it (a relative default silently split kiosks by working directory).
DEFAULT_STATE_DIR = "/var/lib/healthgate"
STATE_DIR_ENV = "HEALTHGATE_STATE_DIR"  # overrides the default of the state-dir options
# Kept here, not imported from firmware.credentials.trust: the configuration stays importable
# without the credential stack; tests/test_config.py checks the two lists agree.
DCC_SIGNER_AT_VALIDATION_TIME = "at-validation-time"
DCC_SIGNER_VALIDITY_CHOICES = (DCC_SIGNER_AT_VALIDATION_TIME, "covers-dcc")
FLEET_URL_SCHEMES = ("http", "https")  # fleet.url without one is refused at start
# Keys that hold file system paths; relative values are taken from the configuration file's
# folder, not from wherever the service happens to start.
PATH_KEYS = (("state", "dir"), ("camera", "path"), ("face", "model_dir"), ("face", "gallery"))


class ConfigError(ValueError):
    """A configuration problem; the message names the key and what is wrong."""


@dataclass
class KioskSection:
    """Where the kiosk stands and the timeouts of its state machine, in seconds."""

    country: str = ""  # ISO 3166 alpha-2 of the site: selects the DCC business rules
    region: str = ""  # optional sub-national region for DCC rules

    frame_timeout_s: float = 1.0  # no frame for this long -> camera FAULT
    result_hold_s: float = 3.0  # how long GRANTED / DENIED stay on the display
    scan_timeout_s: float = 10.0  # SCANNING without a decision falls back to IDLE
    fault_retry_s: float = 2.0  # how often a latched FAULT retries its part
    max_trust_age_h: float = 72.0  # refuse every credential once trust data is older
    same_code_cooldown_s: float = 5.0  # ignore a code re-read while it is still in view
    multi_code_timeout_s: float = 20.0  # all parts of a multi-code SHC must be read within this
    aztec_every_n_frames: int = 3  # Aztec search is costly and Aztec passes rare; 0 = never
    pseudonym_key_rotation_h: float = 24.0  # how often the log pseudonym key rotates
    # DCC signing certificate validity: "at-validation-time" (valid when the code is checked, as
    # the EU reference apps do) or "covers-dcc" (must cover the DCC's iat..exp; hcert spec 3.3.5)
    dcc_signer_validity: str = DCC_SIGNER_AT_VALIDATION_TIME


@dataclass
class CameraSection:
    source: str = "files"  # files | video | fake | picamera2 | v4l2
    path: str = ""  # image file, folder of images, or video file (files / video)
    width: int = 1280
    height: int = 720
    fps: float = 15.0
    loop: bool = False
    device: int = 0  # v4l2 device index


@dataclass
class DisplaySection:
    port: str = "emulator"  # "emulator" or a serial device such as /dev/ttyUSB0
    baudrate: int = 115200
    ack_timeout_s: float = 0.3
    max_retries: int = 3
    heartbeat_s: float = 2.0


@dataclass
class FleetSection:
    url: str = ""  # empty: no uploads (offline kiosk)
    upload_interval_s: float = 5.0
    trust_sync_interval_s: float = 900.0  # how often signed trust data is pulled
    batch_size: int = 200
    request_timeout_s: float = 5.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    bundle_dir: str = ""  # USB mount folder searched for an offline bundle in maintenance mode


@dataclass
class FaceSection:
    """Binding the person to the credential (see docs/faces.md)."""

    enabled: bool = True  # check the face of every verified credential
    timeout_s: float = 5.0  # how long to wait for a usable face after a valid code
    # off | advisory (logged) | required (deny without temporal cues) | model (the PAD model
    # must judge the face live, else FACE_SPOOF; temporal attack evidence also denies)
    liveness: str = "advisory"
    anti_sharing_window_s: float = 600.0  # one credential, two faces within this: denied
    threads: int = 2  # inference threads
    model_dir: str = ""  # empty: the shipped int8 models
    threshold: float = 0.0  # 0: the calibrated threshold of the shipped model
    face_pass: bool = False  # 1:N among opted-in members, who may then enter without a code
    face_pass_threshold: float = 0.0  # 0: the model's calibrated 1:N bar (FAR 1e-5 per pair)
    gallery: str = ""  # encrypted gallery of opted-in members; empty: <state.dir>/gallery.hgg


@dataclass
class StatusSection:
    """The read-only status page served by the kiosk (see docs/kiosk.md#status-page)."""

    listen: str = ""  # empty: off; "127.0.0.1:8080", or a LAN address to reach it from a phone
    token: str = ""  # empty: no token; else required by the page, its JSON and /metrics


@dataclass
class StateSection:
    dir: str = DEFAULT_STATE_DIR  # device key, event log, trust cache (mode 0700)


@dataclass
class Config:
    kiosk: KioskSection = field(default_factory=KioskSection)
    camera: CameraSection = field(default_factory=CameraSection)
    display: DisplaySection = field(default_factory=DisplaySection)
    fleet: FleetSection = field(default_factory=FleetSection)
    face: FaceSection = field(default_factory=FaceSection)
    status: StatusSection = field(default_factory=StatusSection)
    state: StateSection = field(default_factory=StateSection)


_CHOICES: dict[str, tuple[str, ...]] = {
    "camera.source": ("files", "video", "fake", "picamera2", "v4l2"),
    "face.liveness": ("off", "advisory", "required", "model"),
    "kiosk.dcc_signer_validity": DCC_SIGNER_VALIDITY_CHOICES,
}
_NON_NEGATIVE = {"kiosk.aztec_every_n_frames", "kiosk.same_code_cooldown_s", "camera.device",
                 "face.threshold", "face.face_pass_threshold"}
_POSITIVE = {
    "kiosk.frame_timeout_s", "kiosk.result_hold_s", "kiosk.scan_timeout_s",
    "kiosk.fault_retry_s", "kiosk.max_trust_age_h", "camera.width", "camera.height", "camera.fps",
    "display.baudrate", "display.ack_timeout_s", "display.heartbeat_s", "fleet.upload_interval_s", "fleet.trust_sync_interval_s",
    "fleet.batch_size", "fleet.request_timeout_s", "fleet.backoff_initial_s", "fleet.backoff_max_s",
    "kiosk.pseudonym_key_rotation_h", "kiosk.multi_code_timeout_s", "face.timeout_s", "face.anti_sharing_window_s", "face.threads",
}


def _coerce(key: str, value: Decoded, kind: Any) -> Decoded:  # Any: a hint from get_type_hints
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {value!r}")
    if key in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key}: must be 0 or more, got {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{key}: must be one of {', '.join(_CHOICES[key])}, got {value!r}")
    return value


def _build(cls: type[D], data: dict[str, Decoded], prefix: str) -> D:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}{key}: unknown key (known: {', '.join(sorted(known))})")
    values: dict[str, Decoded] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        key, raw, kind = f"{prefix}{f.name}", data[f.name], hints[f.name]
        if isinstance(kind, type) and is_dataclass(kind):  # a section's table
            if not isinstance(raw, dict):
                raise ConfigError(f"{key}: expected a table [{key}], got {type(raw).__name__}")
            values[f.name] = _build(kind, raw, key + ".")
        else:
            values[f.name] = _coerce(key, raw, kind)
    return cls(**values)


def parse_config(data: dict[str, Decoded]) -> Config:
    """Validate a parsed TOML document into a Config; raises ConfigError naming the key."""
    config: Config = _build(Config, data, "")
    country = config.kiosk.country
    if country and not (len(country) == 2 and country.isascii() and country.isupper()):
        raise ConfigError(f"kiosk.country: expected an ISO 3166 alpha-2 code such as 'DE', "
                          f"got {country!r}")
    if config.fleet.url:
        parts = urlsplit(config.fleet.url)
        if parts.scheme not in FLEET_URL_SCHEMES or not parts.hostname:
            raise ConfigError(f"fleet.url: expected an http:// or https:// URL such as "
                              f"'https://fleet.example:8443', got {config.fleet.url!r}")
    _check_status(config.status)
    if config.camera.source in ("files", "video") and not config.camera.path:
        raise ConfigError(f"camera.path: required when camera.source is {config.camera.source!r}")
    return config


MIN_STATUS_TOKEN_CHARS = 16  # a short token on a LAN page could be guessed


def _check_status(section: StatusSection) -> None:
    from firmware.status.server import MAX_TOKEN_CHARS, parse_listen

    if section.listen:
        try:
            parse_listen(section.listen)
        except ValueError as exc:
            raise ConfigError(f"status.listen: {exc}, got {section.listen!r}") from None
    token = section.token
    if token and not (MIN_STATUS_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS
                      and token.isascii() and token.isprintable() and " " not in token):
        raise ConfigError(f"status.token: expected {MIN_STATUS_TOKEN_CHARS} to {MAX_TOKEN_CHARS} "
                          "printable ASCII characters without spaces (e.g. from "
                          "`openssl rand -hex 16`)")


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML file; raises ConfigError with the file name and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration ({exc.strerror})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    try:
        config = parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    resolve_paths(config, path.resolve().parent)
    return config


def resolve_paths(config: Config, base: Path) -> None:
    """Make every relative path key absolute against `base` (the configuration's folder)."""
    for section_name, key in PATH_KEYS:
        section = getattr(config, section_name)
        value = getattr(section, key)
        if value and not Path(value).is_absolute():
            setattr(section, key, str(base / value))
