"""Slow unauthenticated uploads against a real `healthgate-fleet serve` while kiosks keep uploading.

Each round starts a fresh server subprocess on 127.0.0.1 (SQLite), enrols a few kiosks and one
"victim" device, then lets N attackers (asyncio, raw sockets) each declare a 4 MB body on
POST /v1/events and trickle it, reconnecting whenever the server hangs up. The attackers are a
mix of: no credentials, signed headers of an unknown device, and the victim's device id with a
wrong signature (these pass the header checks, so their bodies are admitted and held by the
budget, the per-device limit and the minimum receive rate). Meanwhile the kiosks upload signed
batches (retrying on 503 or a network error, as the kiosk's uploader does) and a prober times
GET /healthz. Figures: the server's RSS growth (from /proc), /healthz latency during the attack,
legitimate uploads sent and accepted. Loopback only; bounded in attackers and time.
Last printed line: one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware.protocol.request_signing import sign_request  # noqa: E402
from firmware.sync.trustsync import register_device  # noqa: E402
from fleet.devclient import EVENTS_PATH, batch_body, make_chain, signed_post  # noqa: E402

HOST = "127.0.0.1"  # loopback only, by construction: there is no option to change it
MAX_ATTACKERS = 2000
MAX_DURATION_S = 120.0
DECLARED_BYTES = 4 * 1024 * 1024  # what each attacker claims to send
START_TIMEOUT_S = 30.0
SETTLE_S = 30.0  # after the attack: time for the kiosks' retries to deliver what is pending
HEALTHZ_INTERVAL_S = 0.05
RSS_INTERVAL_S = 0.1
KIOSK_INTERVAL_S = 0.5  # a kiosk uploads a batch this often
KIOSK_BACKOFF_CAP_S = 5.0
ATTACK_KINDS = ("anonymous", "unknown", "forged")
TARGETS = {"rss_growth_mb": 100.0, "healthz_p95_ms": 100.0}


def rss_mb(pid: int) -> float:
    """Resident set size of a process and its descendants (`--workers N`), from
    /proc/PID/status (VmRSS, kB)."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total = int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += rss_mb(int(child))
            except OSError:
                pass  # gone meanwhile
    return total


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    db: str

    def token(self) -> str:
        out = subprocess.run([sys.executable, "-m", "fleet.cli", "token", "create", "--db",
                              self.db], capture_output=True, text=True, check=True,
                             cwd=ROOT, env=_env(), timeout=60)
        return out.stdout.strip()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(15)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_server(folder: Path, extra: list[str]) -> Server:
    port = free_port()
    db = f"sqlite:///{folder}/fleet.db"
    log = open(folder / "server.log", "wb")  # the refusals are logged: keep the pipe clear
    process = subprocess.Popen([sys.executable, "-m", "fleet.cli", "serve", "--host", HOST,
                                "--port", str(port), "--db", db, *extra],
                               cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return Server(process, url, db)
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"server did not start; see {folder / 'server.log'}")
        time.sleep(0.1)


# -- attackers -----------------------------------------------------------------------------
@dataclass
class AttackStats:
    connections: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0

    def count(self, answer: str) -> None:
        self.answers[answer] = self.answers.get(answer, 0) + 1


def attack_headers(kind: str, port: int, victim: str) -> bytes:
    lines = [f"POST {EVENTS_PATH} HTTP/1.1", f"Host: {HOST}:{port}",
             "Content-Type: application/json", f"Content-Length: {DECLARED_BYTES}"]
    if kind != "anonymous":
        device = victim if kind == "forged" else "no-such-kiosk"
        # Signed, but by a key that is not the device's and over another body.
        signed = sign_request(Ed25519PrivateKey.generate(), device, "POST", EVENTS_PATH, b"x")
        lines += [f"{name}: {value}" for name, value in signed.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def attacker(index: int, port: int, victim: str, until: float, chunk: int,
                   interval_s: float, reconnect_s: float, stats: AttackStats,
                   kinds: list[str]) -> None:
    kind = kinds[index % len(kinds)]
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            stats.count("connect_error")
            await asyncio.sleep(reconnect_s)
            continue
        stats.connections += 1
        answer = "open_at_end"
        try:
            writer.write(attack_headers(kind, port, victim))
            sent = 0
            while time.monotonic() < until and sent < DECLARED_BYTES:
                await writer.drain()
                try:
                    first = await asyncio.wait_for(reader.read(64), interval_s)
                except asyncio.TimeoutError:
                    writer.write(b"x" * chunk)  # still open: trickle on
                    sent += chunk
                    stats.bytes_sent += chunk
                    continue
                answer = first.split(b" ", 2)[1].decode() if first.startswith(b"HTTP/") \
                    else "closed"
                break
        except (OSError, IndexError, UnicodeDecodeError):
            answer = "reset"
        finally:
            writer.close()
        stats.count(f"{kind}:{answer}")
        if time.monotonic() < until:
            await asyncio.sleep(reconnect_s)


def run_attack(count: int, port: int, victim: str, duration_s: float, chunk: int,
               interval_s: float, reconnect_s: float, stats: AttackStats,
               kinds: list[str]) -> None:
    async def main() -> None:
        until = time.monotonic() + duration_s
        await asyncio.gather(*(attacker(n, port, victim, until, chunk, interval_s,
                                        reconnect_s, stats, kinds) for n in range(count)))

    asyncio.run(main())


# -- kiosks and probes -----------------------------------------------------------------------
@dataclass
class KioskStats:
    sent: int = 0  # distinct batches offered
    accepted: int = 0  # batches whose every event was acknowledged
    refusals: dict[str, int] = field(default_factory=dict)


def kiosk(url: str, device_id: str, key: Ed25519PrivateKey, events_per_upload: int,
          attack_over: threading.Event, give_up_at: list[float], stats: KioskStats,
          lock: threading.Lock) -> None:
    """Upload a batch every KIOSK_INTERVAL_S while the attack lasts; each batch is retried
    (fresh signature, backoff, Retry-After honoured) until acknowledged or time is up."""
    next_seq, prev = 1, None
    with requests.Session() as http:
        while not attack_over.is_set():
            kwargs: dict[str, Any] = {} if prev is None else {"prev_hash": prev}
            events = make_chain(key, device_id, events_per_upload, first_seq=next_seq, **kwargs)
            next_seq += events_per_upload
            prev = events[-1].hash
            body = batch_body(events)
            with lock:
                stats.sent += 1
            backoff = 0.2
            while time.monotonic() < give_up_at[0]:
                try:
                    response = signed_post(http, url, key, device_id, body, timeout_s=10)
                    status = str(response.status_code)
                    if response.status_code == 200 and \
                            len(response.json()["acked"]) == len(events):
                        with lock:
                            stats.accepted += 1
                        break
                    wait = float(response.headers.get("Retry-After", backoff))
                except requests.RequestException as error:
                    status, wait = type(error).__name__, backoff
                with lock:
                    stats.refusals[status] = stats.refusals.get(status, 0) + 1
                time.sleep(min(wait, KIOSK_BACKOFF_CAP_S))
                backoff = min(backoff * 2, KIOSK_BACKOFF_CAP_S)
            time.sleep(KIOSK_INTERVAL_S)


def probe_healthz(url: str, stop: threading.Event, latencies_ms: list[float],
                  failures: list[str]) -> None:
    """A fresh connection each time, as an outside monitor would."""
    while not stop.is_set():
        began = time.perf_counter()
        try:
            ok = requests.get(url + "/healthz", timeout=10).status_code == 200
        except requests.RequestException as error:
            ok = False
            failures.append(type(error).__name__)
        if ok:
            latencies_ms.append((time.perf_counter() - began) * 1000)
        stop.wait(HEALTHZ_INTERVAL_S)


def sample_rss(pid: int, stop: threading.Event, samples: list[float]) -> None:
    while not stop.is_set():
        try:
            samples.append(rss_mb(pid))
        except (OSError, RuntimeError):
            return
        stop.wait(RSS_INTERVAL_S)


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def one_round(attackers: int, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fleet-abuse-") as tmp:
        server = start_server(Path(tmp), args.serve_option)
        try:
            return _measure(server, attackers, args)
        finally:
            server.stop()


def _measure(server: Server, attackers: int, args: argparse.Namespace) -> dict[str, Any]:
    keys = {f"kiosk-{n}": Ed25519PrivateKey.generate() for n in range(args.kiosks)}
    victim = "kiosk-victim"
    for device_id, key in [*keys.items(), (victim, Ed25519PrivateKey.generate())]:
        register_device(server.url, server.token(), device_id, key)
    # Warm up (lazy imports, pools, first ingest), then take the baseline.
    warm_key = Ed25519PrivateKey.generate()
    register_device(server.url, server.token(), "kiosk-warmup", warm_key)
    with requests.Session() as http:
        for start in range(1, 200, 20):
            signed_post(http, server.url, warm_key, "kiosk-warmup",
                        batch_body(make_chain(warm_key, "kiosk-warmup", 20, first_seq=start)))
            http.get(server.url + "/healthz", timeout=10)
    pid = server.process.pid
    baseline = rss_mb(pid)

    stop_probes, attack_over = threading.Event(), threading.Event()
    latencies: list[float] = []
    health_failures: list[str] = []
    rss: list[float] = []
    kiosk_stats, lock = KioskStats(), threading.Lock()
    give_up_at = [time.monotonic() + args.duration + SETTLE_S]
    workers = [threading.Thread(target=probe_healthz,
                                args=(server.url, stop_probes, latencies, health_failures)),
               threading.Thread(target=sample_rss, args=(pid, stop_probes, rss))]
    workers += [threading.Thread(target=kiosk, args=(server.url, device_id, key,
                                                     args.events_per_upload, attack_over,
                                                     give_up_at, kiosk_stats, lock))
                for device_id, key in keys.items()]
    for worker in workers:
        worker.start()
    stats = AttackStats()
    began = time.monotonic()
    try:
        run_attack(attackers, int(server.url.rsplit(":", 1)[1]), victim, args.duration,
                   args.chunk, args.interval, args.reconnect, stats, args.kinds.split(","))
    finally:
        attack_over.set()
        stop_probes.set()
    attack_s = time.monotonic() - began
    for worker in workers:
        worker.join(args.duration + SETTLE_S + 30)
    peak = max(rss, default=baseline)
    return {"attackers": attackers, "attack_s": round(attack_s, 1),
            "rss_baseline_mb": round(baseline, 1), "rss_peak_mb": round(peak, 1),
            "rss_growth_mb": round(peak - baseline, 1),
            "healthz_p50_ms": _ms(percentile(latencies, 0.50)),
            "healthz_p95_ms": _ms(percentile(latencies, 0.95)),
            "healthz_max_ms": _ms(max(latencies, default=None) if latencies else None),
            "healthz_ok": len(latencies), "healthz_failed": len(health_failures),
            "legit_sent": kiosk_stats.sent, "legit_accepted": kiosk_stats.accepted,
            "legit_lost": kiosk_stats.sent - kiosk_stats.accepted,
            "legit_retries": dict(sorted(kiosk_stats.refusals.items())),
            "attack_connections": stats.connections,
            "attack_bytes_sent": stats.bytes_sent,
            "attack_answers": dict(sorted(stats.answers.items()))}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attackers", default="100,1000",
                        help="comma-separated attacker counts, one round each (<= 2000)")
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds each attack lasts (<= 120)")
    parser.add_argument("--kiosks", type=int, default=4, help="legitimate uploading kiosks")
    parser.add_argument("--events-per-upload", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=16,
                        help="bytes an attacker trickles per interval")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between an attacker's trickles")
    parser.add_argument("--reconnect", type=float, default=1.0,
                        help="seconds an attacker waits after the server hung up before it "
                             "connects again")
    parser.add_argument("--kinds", default=",".join(ATTACK_KINDS),
                        help="attacker kinds, assigned in turn: anonymous (no credentials), "
                             "unknown (signed as an unregistered device), forged (a registered "
                             "device id, wrong signature)")
    parser.add_argument("--serve-option", action="append", default=[],
                        help="extra `healthgate-fleet serve` argument (repeatable), e.g. "
                             "--serve-option=--body-budget-bytes=16777216")
    args = parser.parse_args()
    counts = [int(part) for part in args.attackers.split(",") if part.strip()]
    if not counts or any(not 0 < n <= MAX_ATTACKERS for n in counts):
        parser.error(f"--attackers: 1..{MAX_ATTACKERS} each")
    if not set(args.kinds.split(",")) <= set(ATTACK_KINDS):
        parser.error(f"--kinds: of {', '.join(ATTACK_KINDS)}")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration: at most {MAX_DURATION_S} s")
    load_before = os.getloadavg()[0]
    rounds = []
    for count in counts:
        result = one_round(count, args)
        rounds.append(result)
        print(f"{count} attackers: RSS +{result['rss_growth_mb']} MB, /healthz p95 "
              f"{result['healthz_p95_ms']} ms, legitimate uploads {result['legit_accepted']}"
              f"/{result['legit_sent']} accepted; attack answers {result['attack_answers']}",
              flush=True)
    ok = all(r["rss_growth_mb"] <= TARGETS["rss_growth_mb"] and r["healthz_p95_ms"] is not None
             and r["healthz_p95_ms"] <= TARGETS["healthz_p95_ms"] and r["legit_lost"] == 0
             and r["legit_sent"] > 0 for r in rounds)
    print(json.dumps({"rounds": rounds, "targets": TARGETS, "targets_met": ok,
                      "declared_bytes": DECLARED_BYTES, "duration_s": args.duration,
                      "kiosks": args.kiosks, "reconnect_s": args.reconnect, "nproc": os.cpu_count(), "cpu": cpu_model(),
                      "load_average_before": round(load_before, 2),
                      "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
