"""Benchmarks of the preloaded shim (issue 2).  Ratios are measured side by
side in one run, alternating the two sides, and reported as median ratios.

    /usr/bin/python3 bench/shim.py [--build build] [--rounds 7]

1. inert: /bin/true and `python3 -c pass` with and without LD_PRELOAD;
   and, as the floor any preloaded library pays, /bin/true with an empty
   shared library preloaded.
2. eager: a loop of small operators that have rewriters (x.repeat on 1-D
   tensors), in a process whose shim is active and has traced once, against
   the same loop without the shim.  Target 1.00.
3. export: a model calling x.repeat(1) on a 1-D tensor 300 times, exported
   under tensorrt (rewritten), against the same model written by hand in
   the rewritten form and exported without the shim.  Target <= 1.03.
"""
import argparse
import os
import tempfile
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = os.environ.get("PYTHON", "/usr/bin/python3")

EAGER = r"""
import sys, time, torch
class M(torch.nn.Module):
    def forward(self, x):
        return x.repeat(2)
# One trace first: the runtime is loaded and its kernels installed.
torch.jit.trace(M(), (torch.arange(3.0),))
x = torch.arange(3.0)
n = int(sys.argv[1])
for _ in range(2000):
    x.repeat(2)
t = time.perf_counter()
for _ in range(n):
    x.repeat(2); x.repeat(3); x.add(1); x.mul(2)
print(time.perf_counter() - t)
"""

EXPORT = r"""
import io, sys, time, torch
hand = sys.argv[1] == "hand"
class Loop(torch.nn.Module):
    def forward(self, x):
        for _ in range(300):
            if hand:
                x = x.unsqueeze(0).repeat(1, 1).squeeze(0)
            else:
                x = x.repeat(1)
        return x
m, x = Loop(), torch.arange(4.0)
torch.onnx.export(m, (x,), io.BytesIO(), opset_version=11)  # warm-up
best = []
for _ in range(3):
    t = time.perf_counter()
    torch.onnx.export(m, (x,), io.BytesIO(), opset_version=11)
    best.append(time.perf_counter() - t)
print(min(best))
"""


def env_with(shim, lib, backend="tensorrt"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env.pop("LD_PRELOAD", None)
    if shim:
        env["LD_PRELOAD"] = str(lib)
        if backend:
            env["TORCHRW_BACKEND"] = backend
    return env


def wall(cmd, env, runs):
    t = time.perf_counter()
    for _ in range(runs):
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) / runs


def inner(code, args, env):
    out = subprocess.run([PY, "-c", code, *args], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def paired(rounds, measure_a, measure_b):
    """Alternates a and b; returns (median a, median b, median a/b)."""
    a, b = [], []
    for i in range(rounds):
        first, second = (measure_a, measure_b) if i % 2 == 0 else (measure_b, measure_a)
        r1, r2 = first(), second()
        if i % 2:
            r1, r2 = r2, r1
        a.append(r1)
        b.append(r2)
    ratios = [x / y for x, y in zip(a, b)]
    return statistics.median(a), statistics.median(b), statistics.median(ratios)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    lib = Path(args.build).resolve() / "lib" / "libtorchrw.so"
    r = args.rounds
    rows = []

    # The floor: what preloading any (empty) shared library costs.
    empty = Path(tempfile.mkdtemp()) / "libempty.so"
    src = empty.with_suffix(".c")
    src.write_text("int trw_bench_empty;\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(empty), str(src)], check=True)
    base = env_with(False, lib)
    a, b, ratio = paired(r, lambda: wall(["/bin/true"], dict(base, LD_PRELOAD=str(empty)), 200),
                         lambda: wall(["/bin/true"], base, 200))
    rows.append(("floor: /bin/true, an empty .so preloaded", a, b, ratio, "ms"))

    for name, cmd, runs in (("/bin/true", ["/bin/true"], 200),
                            ("python3 -c pass", [PY, "-c", "pass"], 20)):
        for backend in (None, "tensorrt"):
            a, b, ratio = paired(r, lambda: wall(cmd, env_with(True, lib, backend), runs),
                                 lambda: wall(cmd, env_with(False, lib), runs))
            label = f"inert: {name}, TORCHRW_BACKEND={'unset' if not backend else backend}"
            rows.append((label, a, b, ratio, "ms"))

    a, b, ratio = paired(r, lambda: inner(EAGER, ["20000"], env_with(True, lib)),
                         lambda: inner(EAGER, ["20000"], env_with(False, lib)))
    rows.append(("eager: 80k small ops after a trace, shim vs none", a, b, ratio, "ms"))

    a, b, ratio = paired(r, lambda: inner(EXPORT, ["rewritten"], env_with(True, lib)),
                         lambda: inner(EXPORT, ["hand"], env_with(False, lib)))
    rows.append(("export: 300x repeat rewritten vs by hand", a, b, ratio, "ms"))

    print(f"{'benchmark':58} {'with':>10} {'without':>10} {'ratio':>7}")
    for label, a, b, ratio, unit in rows:
        print(f"{label:58} {a * 1e3:7.2f} {unit} {b * 1e3:7.2f} {unit} {ratio:7.3f}")


if __name__ == "__main__":
    sys.exit(main())
