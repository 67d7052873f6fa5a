"""A really full file system (RLIMIT_FSIZE in a subprocess): refuse with a reason, lose nothing,
and carry on with the same chain once space is back."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from firmware.eventlog import EventLog

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "kiosk-diskfull"
RUN_TIMEOUT_S = 120

# The writer limits the size of any file it writes (the WAL hits it first), appends until the
# log refuses, reports the refusal, lifts the limit ("the technician freed space") and appends
# again on the same open log. Every printed seq was acknowledged.
WRITER = r"""
import resource, signal, sys
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from firmware.eventlog import EventLog, EventLogError

db, key_file, device, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
log = EventLog.open(db, key, device, quota_bytes=None)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of dying
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
refusals = 0
for _ in range(100_000):  # a refusal is per append: a WAL restart may make room again
    try:
        print("A", log.append("decision", {"decision": "granted", "pad": "x" * 300}).seq,
              flush=True)
    except EventLogError as exc:
        print("E", exc.code, flush=True)
        refusals += 1
        if refusals == 3:
            break
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
for _ in range(5):
    print("A", log.append("decision", {"decision": "granted"}).seq, flush=True)
log.close()
"""


def test_full_disk_refuses_without_loss_and_recovers(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    db = tmp_path / "events.db"
    with EventLog.open(db, key, DEVICE) as log:  # an existing log with some history
        for _ in range(10):
            log.append("decision", {"decision": "granted"})
    result = subprocess.run(
        [sys.executable, "-c", WRITER, str(db), str(key_file), DEVICE, str(256 * 1024)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")[:-1]
    errors = [line.split()[1] for line in lines if line.startswith("E ")]
    acked = [int(line.split()[1]) for line in lines if line.startswith("A ")]
    # ENOSPC surfaces as SQLITE_FULL, EFBIG (this limit) as an I/O error: both refuse.
    assert len(errors) == 3 and set(errors) <= {"EVENTLOG_DISK_FULL", "EVENTLOG_IO"}
    assert acked[0] == 11 and acked == sorted(set(acked))
    assert len(acked) > 5 + 5
    with EventLog.open(db, key, DEVICE) as log:
        report = log.verify()
        assert report.ok and report.last_seq == acked[-1] and report.checked == acked[-1]
        assert all(log.get(seq) is not None for seq in acked)


# A disk without room for the preallocated WAL: the zeros are given back, the log still works.
SMALL_DISK = r"""
import os, resource, signal, sys
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from firmware.eventlog import EventLog

db, key_file, device = sys.argv[1:4]
key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, resource.RLIM_INFINITY))
with EventLog.open(db, key, device, quota_bytes=None) as log:
    print("WAL", os.path.getsize(db + "-wal"), flush=True)
    for n in range(20):
        print("A", log.append("decision", {"decision": "granted", "n": n}).seq, flush=True)
"""


def test_no_room_for_the_preallocated_wal_leaves_a_working_log(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    db = tmp_path / "events.db"
    result = subprocess.run(
        [sys.executable, "-c", SMALL_DISK, str(db), str(key_file), DEVICE],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # the zeros that fitted (up to the 1 MiB limit) were cut off again: only SQLite's frames
    # (the schema and identity commits) remain
    assert lines[0].startswith("WAL ") and int(lines[0].split()[1]) < 1024 * 1024
    assert lines[1:] == [f"A {seq}" for seq in range(1, 21)]
    with EventLog.open(db, key, DEVICE) as log:
        assert log.verify().ok and log.tip_seq == 20
