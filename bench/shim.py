"""Benchmarks of the preloaded shim, for each torch (Debian's and PyPI's).

    /usr/bin/python3 bench/shim.py [--build build] [--rounds 7] [--python PY ...]

1. inert: /bin/true and `PY -c pass` with and without LD_PRELOAD; and, as
   the floor any preloaded library pays, /bin/true with an empty shared
   library preloaded.
2. first export: a fresh process imports torch and exports a small model
   once, under tensorrt against the same without the library: the whole
   process (target <= 1.05), and the first torch.onnx.export call alone,
   which carries loading the runtime and installing its kernels.
3. eager: a loop of small operators that have rewriters (x.repeat on 1-D
   tensors), in a process whose shim is active and has traced once, against
   the same loop without the shim.  Target 1.00.
4. export: a model calling x.repeat(1) on a 1-D tensor 300 times, exported
   under tensorrt (rewritten), against the same model written by hand in
   the rewritten form and exported without the shim.  Target <= 1.03.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

from common import TS, Table, env_with, inner, paired, parser, torch_of, wall, DEFAULT_PYTHONS

FIRST = r"""
import io, time, torch
""" + TS + r"""
class M(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x.repeat(2)) * 2
x = torch.arange(4.0)
t = time.perf_counter()
torch.onnx.export(M(), (x,), io.BytesIO(), opset_version=11, **TS)
print(time.perf_counter() - t)
"""

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
""" + TS + r"""
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
torch.onnx.export(m, (x,), io.BytesIO(), opset_version=11, **TS)  # warm-up
best = []
for _ in range(3):
    t = time.perf_counter()
    torch.onnx.export(m, (x,), io.BytesIO(), opset_version=11, **TS)
    best.append(time.perf_counter() - t)
print(min(best))
"""


def main():
    args = parser(__doc__).parse_args()
    lib = Path(args.build).resolve() / "lib" / "libtorchrw.so"
    r = args.rounds
    table = Table()

    # The floor: what preloading any (empty) shared library costs.
    empty = Path(tempfile.mkdtemp()) / "libempty.so"
    src = empty.with_suffix(".c")
    src.write_text("int trw_bench_empty;\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(empty), str(src)], check=True)
    base = env_with()
    a, b, ratio = paired(r, lambda: wall(["/bin/true"], dict(base, LD_PRELOAD=str(empty)), 200),
                         lambda: wall(["/bin/true"], base, 200))
    table.add("-", "floor: /bin/true, an empty .so preloaded", a, b, ratio)
    for backend in (None, "tensorrt"):
        a, b, ratio = paired(r, lambda: wall(["/bin/true"], env_with(lib, backend), 200),
                             lambda: wall(["/bin/true"], base, 200))
        table.add("-", f"inert: /bin/true, TORCHRW_BACKEND={backend or 'unset'}", a, b, ratio)

    for py in args.pythons or DEFAULT_PYTHONS:
        torch = torch_of(py)
        for backend in (None, "tensorrt"):
            a, b, ratio = paired(r, lambda: wall([py, "-c", "pass"], env_with(lib, backend), 20),
                                 lambda: wall([py, "-c", "pass"], base, 20))
            table.add(torch, f"inert: python -c pass, TORCHRW_BACKEND={backend or 'unset'}",
                      a, b, ratio)
        a, b, ratio = paired(r, lambda: wall([py, "-c", FIRST], env_with(lib), 3),
                             lambda: wall([py, "-c", FIRST], base, 3))
        table.add(torch, "fresh process: import torch, first export", a, b, ratio)
        a, b, ratio = paired(r, lambda: inner(py, FIRST, [], env_with(lib)),
                             lambda: inner(py, FIRST, [], base))
        table.add(torch, "first export call in a process, shim vs none", a, b, ratio)
        a, b, ratio = paired(r, lambda: inner(py, EAGER, ["20000"], env_with(lib)),
                             lambda: inner(py, EAGER, ["20000"], base))
        table.add(torch, "eager: 80k small ops after a trace, shim vs none", a, b, ratio)
        a, b, ratio = paired(r, lambda: inner(py, EXPORT, ["rewritten"], env_with(lib)),
                             lambda: inner(py, EXPORT, ["hand"], base))
        table.add(torch, "export: 300x repeat rewritten vs by hand", a, b, ratio)
    table.print()


if __name__ == "__main__":
    sys.exit(main())
