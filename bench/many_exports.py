"""Many exports in one process: memory and time per export, for each torch.

    /usr/bin/python3 bench/many_exports.py [--build build] [--rounds 3] [--exports 1000] [--python PY ...]

One process per side exports a small model (x.repeat, which tensorrt
rewrites) --exports times to memory, after 50 exports of warm-up, and
reports how much its resident memory grew per export and how long an
export took.  The sides run side by side in one run, alternating round by
round:

- plain: torch without torchrw;
- plain, by hand: torch without torchrw exporting the model written by
  hand in the form tensorrt's rewriter gives it (the same graph: torch's
  own growth per export depends on the graph's size);
- torchrw: preloaded, TORCHRW_BACKEND=tensorrt, no report;
- torchrw + report: the same with TORCHRW_REPORT (a record appended per
  export).

Printed: the medians over rounds, and each side's ratios to plain and to
plain by hand (medians of the per-round ratios).  Target: memory growth per export at most
1.5x plain torch's, with and without the report.
"""
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import TS, env_with, parser, torch_of, DEFAULT_PYTHONS

LOOP = r"""
import gc, io, sys, time, torch
""" + TS + r"""
def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
hand = sys.argv[2] == "hand"
class M(torch.nn.Module):
    def forward(self, x):
        # By hand: what tensorrt's rewriter makes of x.repeat(3), the same graph.
        y = x.unsqueeze(0).repeat(1, 3).squeeze(0) if hand else x.repeat(3)
        return torch.relu(y) * 2
m, x = M(), torch.arange(4.0)
def export():
    torch.onnx.export(m, (x,), io.BytesIO(), opset_version=11, **TS)
for _ in range(50):
    export()
n = int(sys.argv[1])
gc.collect()
before = rss_kb()
t = time.perf_counter()
for _ in range(n):
    export()
elapsed = time.perf_counter() - t
gc.collect()
print((rss_kb() - before) / n, elapsed / n)
"""


def measure(python, env, exports, model):
    out = subprocess.run([python, "-c", LOOP, str(exports), model], env=env, check=True,
                         capture_output=True, text=True).stdout
    kb, secs = out.strip().splitlines()[-1].split()
    return float(kb), float(secs)


def ratio(a, b):
    # Growth can be 0 KB on either side; a ratio of nothing is 1.
    if b <= 0:
        return 1.0 if a <= 0 else float("inf")
    return a / b


def main():
    ap = parser(__doc__)
    ap.add_argument("--exports", type=int, default=1000)
    ap.set_defaults(rounds=3)
    args = ap.parse_args()
    lib = Path(args.build).resolve() / "lib" / "libtorchrw.so"
    print(f"{'torch':14} {'side':18} {'KB/export':>10} {'ms/export':>10} "
          f"{'mem/plain':>10} {'mem/hand':>9} {'time/plain':>11} {'time/hand':>10}")
    for python in args.pythons or DEFAULT_PYTHONS:
        torch = torch_of(python)
        with tempfile.TemporaryDirectory() as work:
            report = os.path.join(work, "report.jsonl")
            sides = {
                "plain": (env_with(), "repeat"),
                "plain, by hand": (env_with(), "hand"),
                "torchrw": (env_with(lib), "repeat"),
                "torchrw + report": (env_with(lib, TORCHRW_REPORT=report), "repeat"),
            }
            results = {name: [] for name in sides}
            for r in range(args.rounds):
                order = list(sides) if r % 2 == 0 else list(reversed(sides))
                for name in order:
                    env, model = sides[name]
                    results[name].append(measure(python, env, args.exports, model))
                if os.path.exists(report):
                    os.unlink(report)
        def ratios(runs, base):
            mem = statistics.median(ratio(k, b) for (k, _), (b, _) in zip(runs, base))
            tim = statistics.median(s / b for (_, s), (_, b) in zip(runs, base))
            return mem, tim
        for name, runs in results.items():
            kb = statistics.median(k for k, _ in runs)
            ms = statistics.median(s for _, s in runs) * 1e3
            mem_p, tim_p = ratios(runs, results["plain"])
            mem_h, tim_h = ratios(runs, results["plain, by hand"])
            print(f"{torch:14} {name:18} {kb:10.2f} {ms:10.2f} "
                  f"{mem_p:10.2f} {mem_h:9.2f} {tim_p:11.2f} {tim_h:10.2f}")


if __name__ == "__main__":
    main()
