"""Per-call overhead of a Python function rewriter (issue 3), measured side
by side in one run, alternating the two sides:

    /usr/bin/python3 bench/python_rewriters.py [--build build] [--rounds 7] [--python PY ...]

for each torch (Debian's and PyPI's).
A model calls a Python-rewritten function 300 times while it is exported
under the preloaded library (the rewriter runs 300 times, each calling the
original), against the same model written by hand in the rewritten form
(a function calling the original, so both sides trace the same Python
frames) and exported without it: what remains is torchrw's dispatch and
get_context().
Target: ratio <= 1.10 (mmdeploy's rewriter inspects the call stack and
costs about 2.5 ms a call on such a loop).
"""
import sys
import tempfile
import textwrap
from pathlib import Path

from common import TS, Table, env_with, inner, paired, parser, torch_of, DEFAULT_PYTHONS

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
""") + TS + textwrap.dedent("""
    hand = sys.argv[1] == "hand"
    def shift_by_hand(x):
        return benchlib.shift(x) * 1
    class Loop(torch.nn.Module):
        def forward(self, x):
            for _ in range(300):
                x = shift_by_hand(x) if hand else benchlib.shift(x)
            return x
    m, x = Loop(), torch.ones(4)
    torch.onnx.export(m, (x,), io.BytesIO(), **TS)  # warm-up
    times = []
    for _ in range(3):
        t = time.perf_counter()
        torch.onnx.export(m, (x,), io.BytesIO(), **TS)
        times.append(time.perf_counter() - t)
    print(min(times))
""")

def workdir(build):
    """The preloaded library, and a directory holding benchlib and its
    rewriter module (both benchmarks that time Python rewriters use them)."""
    lib = Path(build).resolve() / "lib" / "libtorchrw.so"
    work = Path(tempfile.mkdtemp())
    (work / "benchlib.py").write_text(LIB)
    (work / "bench_rewriters.py").write_text(REWRITER)
    return lib, work


def main():
    args = parser(__doc__).parse_args()
    lib, work = workdir(args.build)
    base = env_with(PYTHONPATH=work)
    shim = env_with(lib, PYTHONPATH=work, TORCHRW_PYTHON="bench_rewriters")
    table = Table()
    for py in args.pythons or DEFAULT_PYTHONS:
        a, b, ratio = paired(args.rounds, lambda: inner(py, EXPORT, ["rewritten"], shim),
                             lambda: inner(py, EXPORT, ["hand"], base))
        table.add(torch_of(py), "python rewriter: 300 rewritten calls vs hand-written",
                  a, b, ratio)
    table.print()


if __name__ == "__main__":
    sys.exit(main())
