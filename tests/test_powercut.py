"""Power cut: a writer process is SIGKILLed amid its appends; every acknowledged event survives.

The kills follow the writer's progress, not the clock: each round kills the writer once it has
acknowledged a random number of appends (it goes on appending while the test reads, so the kill
lands inside a later append, commit or compaction), on a fast machine as on a loaded one.

SIGKILL ends the process mid-append, mid-commit (alone, or a group commit of several threads) or
mid-compaction, leaving whatever SQLite had written in the database and WAL files. (It cannot take the OS page cache with it, so it tests the
application's part; synchronous=FULL is what covers the OS part, see docs/eventlog.md.)
"""
from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from firmware.eventlog import EventLog

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "kiosk-powercut"
READY_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 30.0
PROGRESS_GUARD_S = 120.0  # hang guard for a round's appends; nothing is timed against it
# Appends acknowledged before each kill, drawn per round. In "compact" mode the rounds together
# must outgrow the 80 KiB quota (about 100 events) so that compaction runs between kills.
ACKS_BEFORE_KILL = {"append": (1, 90), "group": (1, 90), "compact": (20, 90)}

# The writer prints "A <seq>" only after append() returned (the kiosk's "shown" moment) and
# "S <seqs>" for the events a server acknowledged, before it records that with mark_uploaded().
# In "compact" mode a tiny quota makes every few appends compact uploaded events, so kills also
# land inside compaction. In "group" mode GROUP_THREADS threads append at once, so kills land
# inside group commits; each thread reports its own events (one os.write per line: atomic).
GROUP_THREADS = 4
WRITER = r"""
import os, sys, threading
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from firmware.eventlog import EventLog
from firmware.eventlog.outbox import Outbox

db, key_file, device, mode, threads = sys.argv[1:6]
key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
quota = 80 * 1024 if mode == "compact" else None
with EventLog.open(db, key, device, quota_bytes=quota) as log:
    outbox = Outbox(log)
    print("READY", log.tip_seq, flush=True)
    if mode == "group":
        def appender(name):
            n = 0
            while True:
                n += 1
                event = log.append("decision", {"decision": "granted", "thread": name, "n": n})
                os.write(1, b"A %d\n" % event.seq)
        for name in range(int(threads)):
            threading.Thread(target=appender, args=(name,), daemon=True).start()
        threading.Event().wait(600)  # until killed
    n = 0
    while True:
        n += 1
        event = log.append("decision", {"decision": "granted" if n % 3 else "denied",
                                        "reason": None, "format": "dcc", "n": n,
                                        "pseudonym": "%032x" % n})
        print("A", event.seq, flush=True)
        if mode == "compact" and event.seq % 5 == 0:
            batch = [e.seq for e in outbox.pending(5, newest_first=False)]
            print("S", *batch, flush=True)  # the server now holds these (stands in for it)
            outbox.mark_uploaded(batch)
"""


def _complete_acks(chunks: list[bytes]) -> int:
    """The "A" lines printed in full so far (the last piece may be a line cut short)."""
    return sum(line.startswith(b"A ") for line in b"".join(chunks).split(b"\n")[:-1])


def run_writer_and_kill(db: Path, key_file: Path, mode: str, kill_after_acks: int) -> tuple[
        int, list[int], list[int]]:
    """Start the writer, SIGKILL it once it has printed `kill_after_acks` acknowledgements;
    returns (tip at start, acked seqs, uploaded seqs) from the complete lines it printed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(key_file), DEVICE, mode,
                             str(GROUP_THREADS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while b"\n" not in buffer:
        if time.monotonic() > deadline or not selector.select(timeout=1.0) and proc.poll():
            proc.kill()
            raise AssertionError(f"writer never became ready: {proc.stderr.read()!r}")
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            proc.wait(EXIT_TIMEOUT_S)
            raise AssertionError(f"writer died before ready: {proc.stderr.read()!r}")
        buffer += chunk
    chunks: list[bytes] = [buffer]
    deadline = time.monotonic() + PROGRESS_GUARD_S
    while _complete_acks(chunks) < kill_after_acks:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"writer stalled before {kill_after_acks} appends: "
                                 f"{proc.stderr.read()!r}")
        if not selector.select(timeout=1.0):
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            proc.wait(EXIT_TIMEOUT_S)
            raise AssertionError(f"writer died before it was killed: {proc.stderr.read()!r}")
        chunks.append(chunk)
    proc.send_signal(signal.SIGKILL)  # the writer is appending on meanwhile: the kill lands
    proc.wait(EXIT_TIMEOUT_S)  # inside a later append, commit or compaction
    while chunk := os.read(proc.stdout.fileno(), 65536):  # what it printed before it died
        chunks.append(chunk)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()  # killed, not crashed
    text = b"".join(chunks).decode()
    lines = text.split("\n")[:-1]  # the last piece may be a line cut short by the kill
    start_tip = int(lines[0].split()[1])
    acked = [int(line.split()[1]) for line in lines[1:] if line.startswith("A ")]
    uploaded = [int(s) for line in lines[1:] if line.startswith("S ") for s in line.split()[1:]]
    return start_tip, acked, uploaded


@pytest.mark.slow
@pytest.mark.parametrize("mode, kills", [("append", 20), ("compact", 10), ("group", 10)])
def test_sigkill_never_loses_an_acknowledged_event(tmp_path: Path, mode: str, kills: int) -> None:
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    db = tmp_path / "events.db"
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    acked: set[int] = set()
    uploaded: set[int] = set()
    tip = 0
    for round_no in range(kills):
        target = rng.randint(*ACKS_BEFORE_KILL[mode])
        start_tip, new_acked, new_uploaded = run_writer_and_kill(db, key_file, mode, target)
        assert len(new_acked) >= target, f"round {round_no}: the kill came before its appends"
        assert start_tip == tip, f"round {round_no}: restart did not resume at the tip"
        if mode == "group":  # threads print in any order, but each seq once, after the tip
            assert len(set(new_acked)) == len(new_acked) and min(new_acked, default=tip + 1) > tip
        else:
            assert new_acked == list(range(tip + 1, tip + 1 + len(new_acked)))
        acked.update(new_acked)
        uploaded.update(new_uploaded)
        with EventLog.open(db, key, DEVICE, quota_bytes=80 * 1024 if mode == "compact"
                           else None) as log:
            report = log.verify()
            assert report.ok, f"round {round_no} (killed after {target} appends): {report}"
            anchor = report.anchor_seq
            for seq in acked:
                if seq <= anchor:  # compacted: allowed only after the upload was recorded
                    assert seq in uploaded, f"seq {seq} compacted but the server never had it"
                else:
                    assert log.get(seq) is not None, f"acknowledged seq {seq} lost"
            # At most one commit per round can be unacknowledged: the one the kill cut off
            # between its commit and its print (one per thread in group mode: each thread
            # has one append outstanding).
            floor = max(start_tip, max(acked, default=0))
            assert floor <= log.tip_seq <= floor + (GROUP_THREADS if mode == "group" else 1)
            tip = log.tip_seq
    assert len(acked) > kills  # the kills really landed among appends
    if mode == "compact":
        assert report.anchor_seq > 0  # compaction really ran between kills
