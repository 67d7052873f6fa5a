"""Every typical mistake gets one line and the documented exit code (issue 16), and the
commands explain themselves (--version, defaults and an example in --help): the real commands
run as subprocesses, on loopback only."""
from __future__ import annotations

import base64
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMAND_TIMEOUT_S = 120.0  # a guard against a hung command, not a speed claim
GOOD_KEY = base64.b64encode(bytes(32)).decode()
MODULES = {"healthgate": "firmware.cli", "healthgate-provision": "provisioning.cli",
           "healthgate-fleet": "fleet.cli"}


def run(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", MODULES[command], *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT_S)


def closed_port() -> int:
    """A loopback port nobody listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def plain_http() -> Iterator[int]:
    """A plain-HTTP server on loopback, for "TLS against plain HTTP"."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A provisioned state folder, a file where a folder belongs, a fleet database and key."""
    base = tmp_path_factory.mktemp("mistakes")
    state = base / "state"
    assert run("healthgate-provision", "init", "--state-dir", str(state)).returncode == 0
    (base / "a-file").write_text("not a folder\n")
    db = base / "fleet.db"
    assert run("healthgate-fleet", "init", "--db", f"sqlite:///{db}").returncode == 0
    assert run("healthgate-fleet", "keygen", "--key", str(base / "fleet.key")).returncode == 0
    (base / "signers.json").write_text('{"certificates": []}')
    (base / "kiosk.toml").write_text(f'[camera]\nsource = "fake"\n[face]\nenabled = false\n'
                                     f'[state]\ndir = "{base / "a-file"}"\n')
    return {"base": base, "state": state, "db": db}


@dataclass(frozen=True)
class Mistake:
    name: str
    command: str
    args: Callable[[dict[str, Path], int], list[str]]  # (setup, plain http port) -> argv
    exit_code: int
    says: Callable[[dict[str, Path], int], list[str]]  # what the one line must name


def _register(url: str) -> Callable[[dict[str, Path], int], list[str]]:
    return lambda s, _: ["register", "--state-dir", str(s["state"]), "--fleet-url", url,
                         "--token", "enrol-0123456789abcdef", "--fleet-key", GOOD_KEY]


CLOSED = closed_port()
MISTAKES = [
    Mistake("register: closed port", "healthgate-provision",
            _register(f"http://127.0.0.1:{CLOSED}"), 1,
            lambda s, p: [f"cannot reach http://127.0.0.1:{CLOSED}: connection refused",
                          "--fleet-url"]),
    Mistake("register: unreachable host", "healthgate-provision",
            _register("http://no-such-host.invalid"), 1,
            lambda s, p: ["cannot reach http://no-such-host.invalid: host not found",
                          "--fleet-url"]),
    Mistake("register: TLS against plain HTTP", "healthgate-provision",
            lambda s, p: _register(f"https://127.0.0.1:{p}")(s, p), 1,
            lambda s, p: [f"cannot reach https://127.0.0.1:{p}: TLS", "plain http://"]),
    Mistake("register: URL without a scheme", "healthgate-provision",
            _register("127.0.0.1:8443"), 2, lambda s, p: ["--fleet-url", "https://"]),
    Mistake("register: bad base64 key", "healthgate-provision",
            lambda s, p: ["register", "--state-dir", str(s["state"]), "--fleet-url",
                          "http://127.0.0.1:9", "--token", "t", "--fleet-key", "abc"], 2,
            lambda s, p: ["--fleet-key", "healthgate-fleet keygen"]),
    Mistake("template-key: bad base64", "healthgate-provision",
            lambda s, p: ["template-key", "--state-dir", str(s["state"]), "--id", "site-1",
                          "--import-b64", "abc"], 2, lambda s, p: ["--import-b64", "base64"]),
    Mistake("check: bad base64 fleet key", "healthgate",
            lambda s, p: ["check", "HC1:NCF", "--fleet-key", "abc"], 2,
            lambda s, p: ["--fleet-key", "healthgate-fleet keygen"]),
    Mistake("init: state path is a file", "healthgate-provision",
            lambda s, p: ["init", "--state-dir", str(s["base"] / "a-file")], 2,
            lambda s, p: [f"{s['base'] / 'a-file'} is a file, not a folder", "--state-dir"]),
    Mistake("init: a parent of the state path is a file", "healthgate-provision",
            lambda s, p: ["init", "--state-dir", str(s["base"] / "a-file" / "state")], 2,
            lambda s, p: [f"{s['base'] / 'a-file'} is a file, not a folder"]),
    Mistake("run: state.dir is a file", "healthgate",
            lambda s, p: ["run", "--config", str(s["base"] / "kiosk.toml")], 2,
            lambda s, p: [f"{s['base'] / 'a-file'} is a file, not a folder", "state.dir"]),
    Mistake("fleet admin: PostgreSQL down", "healthgate-fleet",
            lambda s, p: ["devices", "list", "--db", f"postgresql://127.0.0.1:{CLOSED}/x"], 2,
            lambda s, p: [f"cannot reach the database postgresql://127.0.0.1:{CLOSED}/x",
                          "connection refused", "--db"]),
    Mistake("fleet serve: PostgreSQL down", "healthgate-fleet",
            lambda s, p: ["serve", "--port", str(closed_port()),
                          "--db", f"postgresql://127.0.0.1:{CLOSED}/x"], 2,
            lambda s, p: [f"cannot reach the database postgresql://127.0.0.1:{CLOSED}/x"]),
    Mistake("fleet publish: a name no kiosk fetches", "healthgate-fleet",
            lambda s, p: ["publish", "dcc-rulez", str(s["base"] / "signers.json"),
                          "--db", f"sqlite:///{s['db']}", "--key", str(s["base"] / "fleet.key")],
            2, lambda s, p: ["dcc-rulez", "dcc-rules", "dcc-signers", "status-records"]),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_a_typical_mistake_gets_one_line_and_its_exit_code(
        mistake: Mistake, setup: dict[str, Path], plain_http: int) -> None:
    result = run(mistake.command, *mistake.args(setup, plain_http))
    output = result.stdout + result.stderr
    assert result.returncode == mistake.exit_code, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines()
             if line.strip() and not line.startswith("database: ")]
    assert len(lines) == 1, output
    for phrase in mistake.says(setup, plain_http):
        assert phrase in lines[0], (phrase, lines[0])
    assert len(lines[0]) < 400  # a sentence, not a requests repr


def test_selftest_names_an_unreachable_fleet_in_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert run("healthgate-provision", "init", "--state-dir", str(state)).returncode == 0
    config = tmp_path / "kiosk.toml"
    config.write_text(f'[camera]\nsource = "fake"\n[fleet]\nurl = "http://127.0.0.1:{CLOSED}"\n'
                      f'[state]\ndir = "{state}"\n')
    result = run("healthgate-provision", "selftest", "--config", str(config))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("FAIL fleet"))
    assert f"cannot reach http://127.0.0.1:{CLOSED}: connection refused" in line
    assert "fleet.url" in line


# -- --version, defaults and an example in every --help ----------------------------------------
HELPS = [("healthgate", []), ("healthgate", ["run"]), ("healthgate", ["check"]),
         ("healthgate", ["status"]), ("healthgate", ["log", "verify"]),
         ("healthgate-provision", []), ("healthgate-provision", ["init"]),
         ("healthgate-provision", ["register"]), ("healthgate-provision", ["template-key"]),
         ("healthgate-provision", ["selftest"]), ("healthgate-provision", ["enrol"]),
         ("healthgate-fleet", []), ("healthgate-fleet", ["serve"]),
         ("healthgate-fleet", ["token", "create"]), ("healthgate-fleet", ["devices", "list"]),
         ("healthgate-fleet", ["publish"])]


@pytest.mark.parametrize("command", sorted(MODULES))
def test_every_command_has_version(command: str) -> None:
    from firmware.clihelp import software_version

    result = run(command, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"{command} {software_version()}"


@pytest.mark.parametrize(("command", "sub"), HELPS, ids=[" ".join([c, *s]) for c, s in HELPS])
def test_every_help_ends_with_an_example(command: str, sub: list[str]) -> None:
    result = run(command, *sub, "--help")
    assert result.returncode == 0, result.stderr
    tail = result.stdout.rstrip().rsplit("\nexample:\n", 1)
    assert len(tail) == 2, result.stdout
    assert all(line.strip().startswith(command) or line.startswith("  ")
               for line in tail[1].strip().splitlines())
    assert command in tail[1]


def test_defaults_are_shown_and_option_names_agree() -> None:
    from firmware.config import DEFAULT_STATE_DIR

    flat = lambda *a: " ".join(run(*a).stdout.split())  # noqa: E731
    assert "(default: 8443)" in flat("healthgate-fleet", "serve", "--help")
    assert "(default: 24.0)" in flat("healthgate-fleet", "token", "create", "--help")
    assert "(default: /etc/healthgate/kiosk.toml)" in flat("healthgate-provision", "selftest",
                                                           "--help")
    assert "--fleet-url" in flat("healthgate-provision", "register", "--help")
    for args in (("healthgate", "status", "--help"), ("healthgate", "log", "verify", "--help"),
                 ("healthgate-provision", "init", "--help")):
        shown = flat(*args)
        assert "--state-dir" in shown and f"or {DEFAULT_STATE_DIR})" in shown, args
