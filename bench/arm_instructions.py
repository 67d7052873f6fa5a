"""Instructions per inference of each face model on an emulated Cortex-A72 (the Pi 4's core).

No Raspberry Pi is at hand, so this runs the aarch64 LiteRT wheel under qemu-user with the CPU
set to `cortex-a72` (ARMv8.0: NEON, no dot-product instructions, like the Pi 4) and counts the
guest instructions with a small TCG plugin (bench/qemu_insn_plugin.c). XNNPACK picks its
kernels from what the (emulated) CPU offers, so the count is that of the kernels the Pi would
run. Each model runs `--runs` and 1 times in separate processes; the difference divided by
`--runs - 1` is the count for one inference, free of start-up and model loading.

Instruction counts are not time: the figure to read is the int8 / float ratio, and the
milliseconds printed are only an estimate at an assumed instructions-per-cycle and clock
(`--ipc`, `--ghz`). It needs `qemu-aarch64` (Debian `qemu-user`), gcc, and an arm64 root with
Python 3.11, numpy and ai-edge-litert (docs/benchmarks.md says how to make one).

Usage: .venv/bin/python bench/arm_instructions.py --root /work/arm64/root \
    --model tflite_models/sface_int8.tflite --model /tmp/healthgate-sface-build/sface_float.tflite
The last printed line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN_SOURCE = HERE / "qemu_insn_plugin.c"
# Run inside the emulated aarch64 Python: load once, invoke N times on a fixed input.
GUEST_SCRIPT = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, runs = sys.argv[1], int(sys.argv[2])
it = Interpreter(model_path=path, num_threads=1)
it.allocate_tensors()
inp = it.get_input_details()[0]
rng = np.random.default_rng(0)
if inp["dtype"] == np.int8:
    x = rng.integers(-128, 127, size=inp["shape"], dtype=np.int8)
else:
    x = rng.uniform(0, 255, size=inp["shape"]).astype(inp["dtype"])
for _ in range(runs):
    it.set_tensor(inp["index"], x)
    it.invoke()
print("done", runs)
"""
# A Pi 4's /proc/cpuinfo and CPU list, so that cpuinfo (used by XNNPACK) sees a Cortex-A72 and
# not the x86 host: without them XNNPACK is not used at all.
PI4_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\n" for i in range(4))
COUNT_LINE = re.compile(r"^insns: (\d+)$", re.MULTILINE)


def prepare_root(root: Path) -> None:
    """Give the arm64 root the Pi 4's CPU description (files, not mounts)."""
    proc = root / "proc"
    if os.path.ismount(proc):
        raise SystemExit(f"{proc} is a mount: unmount it, the Pi's cpuinfo must be a plain file")
    proc.mkdir(exist_ok=True)
    (proc / "cpuinfo").write_text(PI4_CPUINFO)
    cpus = root / "sys/devices/system/cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    (cpus / "possible").write_text("0-3\n")
    (cpus / "present").write_text("0-3\n")


def build_plugin(folder: Path) -> Path:
    library = folder / "libinsn.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(PLUGIN_SOURCE),
                    "-Wl,--unresolved-symbols=ignore-all"], check=True, timeout=120)
    return library


def count(root: Path, plugin: Path, script: Path, model: Path, runs: int, cpu: str) -> int:
    python = root / "usr/bin/python3.11"
    site = next(root.glob("opt/venv/lib/python3.11/site-packages"), None)
    env = dict(os.environ, QEMU_CPU=cpu)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    result = subprocess.run(["qemu-aarch64", "-L", str(root), "-plugin", str(plugin), "-d",
                             "plugin", str(python), str(script), str(model.resolve()), str(runs)],
                            capture_output=True, text=True, env=env, timeout=3600)
    found = COUNT_LINE.search(result.stdout + result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"emulated run of {model.name} failed: {(result.stderr or '')[-800:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="arm64 root with python3.11, "
                        "numpy and ai-edge-litert (site-packages in /opt/venv or system)")
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--cpu", default="cortex-a72")
    parser.add_argument("--ipc", type=float, default=1.5, help="assumed for the ms estimate")
    parser.add_argument("--ghz", type=float, default=1.8, help="Pi 4B rev 1.4+: 1.8 GHz")
    args = parser.parse_args(argv)
    if shutil.which("qemu-aarch64") is None:
        raise SystemExit("qemu-aarch64 not found (Debian package qemu-user)")
    if args.runs < 2:
        raise SystemExit("--runs must be at least 2")
    prepare_root(args.root)
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plugin = build_plugin(folder)
        script = folder / "guest.py"
        script.write_text(GUEST_SCRIPT)
        for model in args.model:
            many = count(args.root, plugin, script, model, args.runs, args.cpu)
            one = count(args.root, plugin, script, model, 1, args.cpu)
            per_run = (many - one) / (args.runs - 1)
            estimate_ms = per_run / (args.ipc * args.ghz * 1e9) * 1000.0
            figures[model.name] = {"minsn_per_inference": round(per_run / 1e6, 2),
                                   "est_ms_1_thread": round(estimate_ms, 1)}
            print(f"{model.name}: {per_run / 1e6:.1f} M instructions per inference "
                  f"(~{estimate_ms:.1f} ms at IPC {args.ipc}, {args.ghz} GHz, 1 thread)",
                  flush=True)
    print(json.dumps({"cpu": args.cpu, "runs": args.runs, "ipc_assumed": args.ipc,
                      "ghz_assumed": args.ghz, "models": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
