"""Many exports in one process: memory and time per export, for each torch.

    /usr/bin/python3 bench/many_exports.py [--build build] [--rounds 3] [--exports 1000]
                                           [--warmup 300] [--python PY ...]

One process per side exports a small model (x.repeat, which tensorrt
rewrites) --exports times to memory, after --warmup exports, and reports
how much its memory grew per export and how long an export took.  The
sides run side by side in one run, alternating round by round:

- plain: torch without torchrw;
- plain, by hand: torch without torchrw exporting the model written by
  hand in the form tensorrt's rewriter gives it (the same graph: torch's
  own growth per export depends on the graph's size);
- torchrw: preloaded, TORCHRW_BACKEND=tensorrt, no report;
- torchrw + report: the same with TORCHRW_REPORT (a record appended per
  export).

Memory is measured two ways:
- RSS: resident memory (VmRSS), what the issue's target is about; it moves
  a page (4 KB) at a time, so over 1,000 exports it cannot see less than
  about 4 bytes an export, and a process still warming up grows on;
- heap: bytes in use from malloc (mallinfo2: uordblks + hblkhd) plus
  Python's allocated blocks at the size of a small object, which is exact
  and says whether anything is kept per export.

Printed: the medians over rounds, and each side's ratios to plain and to
plain by hand (medians of the per-round ratios).  A ratio of growths that
are both within one page over the run is printed as "~" (nothing to
compare).  Target: RSS growth per export at most 1.5x plain torch's, with
and without the report.
"""
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import TS, env_with, parser, torch_of, DEFAULT_PYTHONS

LOOP = r"""
import ctypes, gc, io, sys, time, torch
class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
def heap_bytes():
    info = libc.mallinfo2()
    # Python's small objects live in pymalloc's arenas, outside malloc's
    # count; 64 bytes is about the size of the ones an export makes.
    return info.uordblks + info.hblkhd + 64 * sys.getallocatedblocks()
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
for _ in range(int(sys.argv[3])):
    export()
n = int(sys.argv[1])
gc.collect()
before, heap_before = rss_kb(), heap_bytes()
t = time.perf_counter()
for _ in range(n):
    export()
elapsed = time.perf_counter() - t
gc.collect()
print((rss_kb() - before) / n, (heap_bytes() - heap_before) / n / 1024, elapsed / n)
"""


def measure(python, env, exports, warmup, model):
    """(RSS KB, heap KB, seconds) per export."""
    out = subprocess.run([python, "-c", LOOP, str(exports), model, str(warmup)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return tuple(float(v) for v in out.strip().splitlines()[-1].split())


def ratio(a, b, floor):
    """a / b for growths per export; None when both are below floor (the
    resolution of the measure): there is nothing to compare."""
    if a < floor and b < floor:
        return None
    return a / max(b, floor)


def median_ratio(pairs, floor):
    rs = [ratio(a, b, floor) for a, b in pairs]
    rs = [r for r in rs if r is not None]
    return statistics.median(rs) if rs else None


def fmt(r, width):
    return f"{'~':>{width}}" if r is None else f"{r:{width}.2f}"


def main():
    ap = parser(__doc__)
    ap.add_argument("--exports", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.set_defaults(rounds=3)
    args = ap.parse_args()
    lib = Path(args.build).resolve() / "lib" / "libtorchrw.so"
    print(f"{'torch':14} {'side':18} {'RSS KB/exp':>10} {'heap KB/exp':>11} {'ms/export':>10} "
          f"{'rss/plain':>10} {'heap/plain':>10} {'rss/hand':>9} {'time/plain':>11} {'time/hand':>10}")
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
                    results[name].append(measure(python, env, args.exports, args.warmup, model))
                if os.path.exists(report):
                    os.unlink(report)
        # One page over the run is what RSS can see; a byte an export, the heap.
        rss_floor, heap_floor = 4.0 / args.exports, 1.0 / 1024
        for name, runs in results.items():
            plain, hand = results["plain"], results["plain, by hand"]
            rss = statistics.median(r[0] for r in runs)
            heap = statistics.median(r[1] for r in runs)
            ms = statistics.median(r[2] for r in runs) * 1e3
            rss_p = median_ratio([(r[0], b[0]) for r, b in zip(runs, plain)], rss_floor)
            heap_p = median_ratio([(r[1], b[1]) for r, b in zip(runs, plain)], heap_floor)
            rss_h = median_ratio([(r[0], b[0]) for r, b in zip(runs, hand)], rss_floor)
            tim_p = statistics.median(r[2] / b[2] for r, b in zip(runs, plain))
            tim_h = statistics.median(r[2] / b[2] for r, b in zip(runs, hand))
            print(f"{torch:14} {name:18} {rss:10.3f} {heap:11.3f} {ms:10.2f} "
                  f"{fmt(rss_p, 10)} {fmt(heap_p, 10)} {fmt(rss_h, 9)} {tim_p:11.2f} {tim_h:10.2f}")

if __name__ == "__main__":
    main()
