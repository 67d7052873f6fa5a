"""Configuration: defaults, the example file, and errors that name the key and the problem."""
from __future__ import annotations

from pathlib import Path

import pytest

from firmware.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_and_example_file_validate() -> None:
    config = parse_config({"camera": {"source": "fake"}})
    assert config.display.port == "emulator"
    example = load_config(ROOT / "examples" / "kiosk.toml")
    assert example.camera.source == "picamera2"
    assert example.kiosk.max_trust_age_h == 72.0


@pytest.mark.parametrize("data, message", [
    ({"camera": {"sorce": "fake"}}, "camera.sorce: unknown key"),
    ({"camera": {"source": "webcam9"}}, "camera.source: must be one of"),
    ({"camera": {"source": "fake", "fps": "fast"}}, "camera.fps: expected float"),
    ({"camera": {"source": "fake", "fps": 0}}, "camera.fps: must be greater than 0"),
    ({"camera": {"source": "files"}}, "camera.path: required"),
    ({"display": {"baudrate": True}}, "display.baudrate: expected int"),
    ({"kiosk": 5}, "kiosk: expected a table"),
    ({"kiosk": {"aztec_every_n_frames": -1}}, "kiosk.aztec_every_n_frames: must be 0 or more"),
    ({"nonsense": {}}, "nonsense: unknown key"),
    ({"kiosk": {"country": "Germany"}}, "kiosk.country: expected an ISO 3166 alpha-2 code"),
    ({"face": {"liveness": "maybe"}}, "face.liveness: must be one of off, advisory, required"),
])
def test_errors_name_the_key(data: dict, message: str) -> None:
    data.setdefault("camera", {"source": "fake"}) if "camera" not in data else None
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(data)


def test_integer_accepted_for_float() -> None:
    assert parse_config({"camera": {"source": "fake", "fps": 10}}).camera.fps == 10.0


def test_broken_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="absent.toml: cannot read"):
        load_config(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[camera\nsource = 'fake'\n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_config(broken)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[display]\nbaudrate = -5\n")
    with pytest.raises(ConfigError, match=r"wrong.toml: display\.baudrate"):
        load_config(wrong)


def test_run_command_reports_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from firmware.app import main

    wrong = tmp_path / "kiosk.toml"
    wrong.write_text("[camera]\nsource = 'fake'\nfps = 'x'\n")
    assert main(["--config", str(wrong)]) == 2
    assert "camera.fps: expected float" in capsys.readouterr().out
