"""Per-call overhead of a Python function rewriter (issue 3), measured side
by side in one run, alternating the two sides:

    /usr/bin/python3 bench/python_rewriters.py [--build build] [--rounds 7]

A model calls a Python-rewritten function 300 times while it is exported
under the preloaded library (the rewriter runs 300 times), against the same
model written by hand in the rewritten form and exported without it.
Target: ratio <= 1.10 (mmdeploy's rewriter inspects the call stack and
costs about 2.5 ms a call on such a loop).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = os.environ.get("PYTHON", "/usr/bin/python3")

LIB = textwrap.dedent("""
    import torch

    def shift(x):
        return x + 1
""")

REWRITER = textwrap.dedent("""
    from torchrw import FUNCTION_REWRITER

    @FUNCTION_REWRITER.register_rewriter("benchlib.shift", backend="tensorrt")
    def shift_rewritten(x):
        ctx = FUNCTION_REWRITER.get_context()
        return ctx.origin_func(x) * 1
""")

EXPORT = textwrap.dedent("""
    import io, sys, time, torch
    import benchlib
    hand = sys.argv[1] == "hand"
    class Loop(torch.nn.Module):
        def forward(self, x):
            for _ in range(300):
                x = (x + 1) * 1 if hand else benchlib.shift(x)
            return x
    m, x = Loop(), torch.ones(4)
    torch.onnx.export(m, (x,), io.BytesIO())  # warm-up
    times = []
    for _ in range(3):
        t = time.perf_counter()
        torch.onnx.export(m, (x,), io.BytesIO())
        times.append(time.perf_counter() - t)
    print(min(times))
""")

def run(args, env):
    out = subprocess.run([PY, "-c", EXPORT, *args], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    lib = Path(a.build).resolve() / "lib" / "libtorchrw.so"
    work = Path(tempfile.mkdtemp())
    (work / "benchlib.py").write_text(LIB)
    (work / "bench_rewriters.py").write_text(REWRITER)
    base = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    base.pop("LD_PRELOAD", None)
    base["PYTHONPATH"] = str(work)
    shim = dict(base, LD_PRELOAD=str(lib), TORCHRW_BACKEND="tensorrt",
                TORCHRW_PYTHON="bench_rewriters")
    rw, hand = [], []
    for i in range(a.rounds):
        pair = [("rw", lambda: run(["rewritten"], shim)), ("hand", lambda: run(["hand"], base))]
        for name, f in (pair if i % 2 == 0 else pair[::-1]):
            (rw if name == "rw" else hand).append(f())
    ratios = [x / y for x, y in zip(rw, hand)]
    print(f"{'benchmark':58} {'with':>10} {'without':>10} {'ratio':>7}")
    print(f"{'python rewriter: 300 rewritten calls vs hand-written':58} "
          f"{statistics.median(rw) * 1e3:7.2f} ms {statistics.median(hand) * 1e3:7.2f} ms "
          f"{statistics.median(ratios):7.3f}")


if __name__ == "__main__":
    sys.exit(main())
