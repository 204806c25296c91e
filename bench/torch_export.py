"""Overhead of rewriting under torch.export's ONNX exporter (issue 9),
measured side by side in one run, alternating the two sides:

    /usr/bin/python3 bench/torch_export.py [--build build] [--rounds 7] [--python PY ...]

for each torch that has that exporter (2.9+; the venv's by default).

1. C operator rewriter: a model calling x.repeat(1) on a 1-D tensor 100
   times, exported with torch.onnx.export(..., dynamo=True) under tensorrt
   (rewritten while the program is lowered), against the same model written
   by hand in the rewritten form and exported without the library.
2. Python function rewriter: a model calling a rewritten function 100 times
   (the rewriter calls the original), against the same call structure
   written by hand, exported without the library.
Target for both: ratio <= 1.03, as under the TorchScript exporter.
"""
import sys
import textwrap

from common import ROOT, Table, env_with, inner, paired, parser, torch_of
from python_rewriters import workdir

CALLS = 100

# Times torch.onnx.export(m, (x,)) through torch.export: a warm-up, then
# the best of three.  Appended to a script that defines m and x.
TIMED_EXPORT = textwrap.dedent("""
    torch.onnx.export(m, (x,), None, dynamo=True, verbose=False)  # warm-up
    best = []
    for _ in range(3):
        t = time.perf_counter()
        torch.onnx.export(m, (x,), None, dynamo=True, verbose=False)
        best.append(time.perf_counter() - t)
    print(min(best))
""")

OPERATOR = textwrap.dedent(f"""
    import sys, time, torch
    hand = sys.argv[1] == "hand"
    class Loop(torch.nn.Module):
        def forward(self, x):
            for _ in range({CALLS}):
                if hand:
                    x = x.unsqueeze(0).expand(1, -1).repeat(1, 1).squeeze(0)
                else:
                    x = x.repeat(1)
            return x
    m, x = Loop(), torch.arange(4.0)
""") + TIMED_EXPORT

# The library and rewriter of bench/python_rewriters.py (benchlib.shift).
PYTHON = textwrap.dedent(f"""
    import sys, time, torch
    import benchlib
    hand = sys.argv[1] == "hand"
    def shift_by_hand(x):
        return benchlib.shift(x) * 1
    class Loop(torch.nn.Module):
        def forward(self, x):
            for _ in range({CALLS}):
                x = shift_by_hand(x) if hand else benchlib.shift(x)
            return x
    m, x = Loop(), torch.ones(4)
""") + TIMED_EXPORT


def has_torch_export_exporter(py):
    version = torch_of(py).split("+")[0].split(".")
    return (int(version[0]), int(version[1])) >= (2, 9)


def main():
    args = parser(__doc__).parse_args()
    lib, work = workdir(args.build)
    base = env_with(PYTHONPATH=work)
    table = Table()
    pythons = args.pythons or [str(ROOT / ".venv" / "bin" / "python")]
    for py in pythons:
        if not has_torch_export_exporter(py):
            print(f"{py}: torch {torch_of(py)} has no torch.export exporter; skipped")
            continue
        torch = torch_of(py)
        a, b, ratio = paired(args.rounds,
                             lambda: inner(py, OPERATOR, ["rewritten"], env_with(lib)),
                             lambda: inner(py, OPERATOR, ["hand"], base))
        table.add(torch, f"torch.export: {CALLS}x repeat rewritten vs by hand", a, b, ratio)
        shim = env_with(lib, PYTHONPATH=work, TORCHRW_PYTHON="bench_rewriters")
        a, b, ratio = paired(args.rounds, lambda: inner(py, PYTHON, ["rewritten"], shim),
                             lambda: inner(py, PYTHON, ["hand"], base))
        table.add(torch, f"torch.export: python rewriter, {CALLS} calls vs by hand",
                  a, b, ratio)
    table.print()


if __name__ == "__main__":
    sys.exit(main())
