"""Decision latency: frame with a code captured -> decision acknowledged by the display.

Runs the real kiosk loop (zxing-cpp, DCC verification, durable signed event append, display
link over a pty to the emulator) on N distinct demo DCCs and prints p50/p95/max. Last line:
one JSON object. Usage: python bench/decision_latency.py [--people 100] [--size 1280x720] [--faces]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from firmware.camera.files import ArraySource  # noqa: E402
from firmware.clock import Clock  # noqa: E402
from firmware.config import KioskSection  # noqa: E402
from firmware.credentials import TrustStore  # noqa: E402
from firmware.demo.frames import background, frame_with_code  # noqa: E402
from firmware.demo.issuer import issue_dcc, make_signer, vaccination_payload  # noqa: E402
from firmware.display import open_display, screen_for  # noqa: E402
from firmware.eventlog import EventLog  # noqa: E402
from firmware.kiosk import Kiosk  # noqa: E402
from firmware.kiosk.pseudonym import Pseudonymiser  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class StatusPoller:
    """The kiosk status page, fetched (JSON and /metrics) every `interval_s` from another
    thread, as a browser and a Prometheus scraper would."""

    def __init__(self, kiosk: Kiosk, display: object, log: EventLog, interval_s: float) -> None:
        from firmware.status.collect import StatusCollector, StatusParts
        from firmware.status.server import StatusServer

        parts = StatusParts(kiosk.status, "bench", display, log.path, log.quota_bytes)
        self.server = StatusServer(StatusCollector(parts), "127.0.0.1", 0)
        self.server.start()
        self.interval_s = interval_s
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import urllib.request

        while not self._stop.wait(self.interval_s):
            for path in ("status.json", "metrics"):
                with urllib.request.urlopen(self.server.url + path, timeout=10) as answer:
                    answer.read()
            self.polls += 1

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(15)
        self.server.stop()
        return self.polls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--size", default="1280x720", help="camera frame size WxH")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--faces", action="store_true",
                        help="the holder's face beside the code: adds detection, quality gates, "
                             "embedding and anti-sharing (liveness off: one frame suffices)")
    parser.add_argument("--status-poll", type=float, default=0.0, metavar="S",
                        help="serve the kiosk status page and fetch status.json and /metrics "
                             "every S seconds during the run (0: no page)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    now = datetime.now(timezone.utc)
    signer = make_signer()
    trust = TrustStore.from_certificates([signer.certificate_der])
    trust.updated_at = now
    empty = background(width, height)
    face, faces = None, None
    if args.faces:
        from firmware.demo.scenario import demo_face
        from firmware.kiosk.facecheck import FaceCheck
        from firmware.kiosk.facestage import FaceStage
        from firmware.vision import FacePipeline

        face = demo_face()
        if face is None:
            print("--faces needs scikit-image (pip install 'healthgate[demo]')", file=sys.stderr)
            return 2
        faces = FaceStage(FaceCheck(FacePipeline(), liveness="off"), timeout_s=2.0)
    frames = []
    for index in range(args.people):
        text = issue_dcc(signer, vaccination_payload(), now - timedelta(days=1), now + timedelta(days=90))
        frames += [empty] * 3 + [frame_with_code(text, width, height, seed=index, face=face)] * 6
    frames += [empty] * 3
    with tempfile.TemporaryDirectory() as tmp:
        display = open_display("emulator", ack_timeout_s=0.3)
        log = EventLog.open(Path(tmp) / "events.db", Ed25519PrivateKey.generate(), "bench")
        kiosk = Kiosk(KioskSection(result_hold_s=0.03, same_code_cooldown_s=1.0),
                      ArraySource(frames, fps=args.fps), display, log, lambda: trust, Clock(),
                      Pseudonymiser(b"b" * 32, 86400.0), screen_for, display_timeout_s=1.0,
                      faces=faces)
        timer = threading.Timer(600, kiosk.stop)  # a bench that hangs must still end
        timer.start()
        poller = StatusPoller(kiosk, display, log, args.status_poll) if args.status_poll else None
        summary = kiosk.run(exit_on_end_of_stream=True)
        polls = poller.stop() if poller is not None else 0
        timer.cancel()
        display.close()
        log.close()
    latencies = [d.latency_ms for d in summary.decisions]
    if not latencies:
        print("no decisions were made", file=sys.stderr)
        return 1
    figures = {
        "decisions": len(latencies),
        "granted": sum(d.granted for d in summary.decisions),
        "frame_size": f"{width}x{height}",
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "max_ms": round(max(latencies), 2),
        "dropped_frames": summary.dropped_frames,
    }
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}")
    print(f"{figures['decisions']} decisions ({figures['granted']} granted) on {width}x{height} frames")
    print(f"frame captured -> display ACK: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
          f"max {figures['max_ms']} ms; {figures['dropped_frames']} stale frames dropped")
    print(json.dumps({"p50_ms": figures["p50_ms"], "p95_ms": figures["p95_ms"],
                      "max_ms": figures["max_ms"], "decisions": figures["decisions"],
                      "faces": args.faces, "status_poll_s": args.status_poll,
                      "status_polls": polls}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
