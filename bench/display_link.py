"""Benchmark: show -> ACK and PING -> STATUS round trips over the emulated display on a real pty."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout as a script

from firmware.display import open_display, screen_for  # noqa: E402
from firmware.display.screen import KIOSK_STATES  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500, help="shows (and pings) to time")
    args = parser.parse_args(argv)
    screens = [screen_for(state, "Pass expired", "Trust data 2h old") for state in KIOSK_STATES]
    show_ms: list[float] = []
    ping_ms: list[float] = []
    with open_display("emulator", ack_timeout_s=0.5) as display:
        for screen in screens:  # warm-up: first frames pay for imports and thread start-up
            display.show(screen, timeout=5.0)
        for index in range(args.count):
            start = time.perf_counter()
            display.show(screens[index % len(screens)], timeout=5.0)
            show_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            display.link.ping()
            ping_ms.append((time.perf_counter() - start) * 1000)
        stats = display.link.stats
        figures = {
            "count": args.count,
            "show_p50_ms": round(statistics.median(show_ms), 3),
            "show_p95_ms": round(percentile(show_ms, 0.95), 3),
            "show_max_ms": round(max(show_ms), 3),
            "ping_p50_ms": round(statistics.median(ping_ms), 3),
            "ping_p95_ms": round(percentile(ping_ms, 0.95), 3),
            "retransmits": stats.retransmits,
            "rx_errors": stats.rx.errors,
        }
    print(f"show->ACK over a pty: p50 {figures['show_p50_ms']} ms, p95 {figures['show_p95_ms']} ms "
          f"({args.count} shows, {figures['retransmits']} retransmits)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
