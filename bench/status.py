"""The export time with torchrw run's status channel on against off.

    /usr/bin/python3 bench/status.py [--build build] [--rounds 7] [--loops 667] [--python PY ...]

Each side runs the same export in a fresh process with the library
preloaded (tensorrt); "on" also gets TORCHRW_STATUS_FD naming a datagram
socket this benchmark drains, as `torchrw run` does on a terminal.  With
the channel on, every operator the trace records goes through torchrw's
counting fallback instead of falling through its dispatch key, and a
record goes out at most every 100 ms.  The model calls x.repeat (on a
1-D tensor, rewritten), neg and slice --loops times (2,000 operators by
default; a sixth of that under torch.export, which is slower): small
operators, the worst case for the per-operator count.  The time is the best of 3
exports after a warm-up, inside the process.
"""
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from common import Table, env_with, paired, parser, torch_of, DEFAULT_PYTHONS

EXPORT = r"""
import io, sys, time, torch
TS = {"dynamo": False} if sys.argv[1] == "torchscript" and torch.__version__ >= "2" else {}
class Loop(torch.nn.Module):
    def forward(self, x):
        for _ in range(int(sys.argv[2])):
            x = torch.neg(x.repeat(2))[:4]
        return x
m, x = Loop(), torch.arange(4.0)
opset = 18 if sys.argv[1] == "torch.export" else 11
torch.onnx.export(m, (x,), io.BytesIO(), opset_version=opset, **TS)  # warm-up
best = []
for _ in range(3):
    t = time.perf_counter()
    torch.onnx.export(m, (x,), io.BytesIO(), opset_version=opset, **TS)
    best.append(time.perf_counter() - t)
print(min(best))
"""


class Channel:
    """A status socket the child writes to; a thread reads and counts."""

    def __init__(self):
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.records = 0
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        while True:
            if not self.ours.recv(64):
                return
            self.records += 1

    def env(self):
        fd = self.theirs.fileno()
        return {"TORCHRW_STATUS_FD": f"{fd}:{os.fstat(fd).st_ino}"}


def run(python, exporter, loops, env, channel=None):
    fds = (channel.theirs.fileno(),) if channel else ()
    out = subprocess.run([python, "-c", EXPORT, exporter, str(loops)], env=env, check=True,
                         capture_output=True, text=True, pass_fds=fds).stdout
    return float(out.strip().splitlines()[-1])


def main():
    ap = parser(__doc__)
    ap.add_argument("--loops", type=int, default=667, help="x.repeat, neg and slice per loop")
    args = ap.parse_args()

    lib = Path(args.build).resolve() / "lib" / "libtorchrw.so"
    channel = Channel()
    table = Table()
    for py in args.pythons or DEFAULT_PYTHONS:
        torch = torch_of(py)
        exporters = ["torchscript"]
        if tuple(int(p) for p in torch.split("+")[0].split(".")[:2]) >= (2, 9):
            exporters.append("torch.export")
        for exporter in exporters:
            loops = args.loops if exporter == "torchscript" else max(1, args.loops // 6)
            before = channel.records
            a, b, ratio = paired(
                args.rounds,
                lambda: run(py, exporter, loops, env_with(lib, **channel.env()), channel),
                lambda: run(py, exporter, loops, env_with(lib)))
            table.add(torch, f"{exporter}: {3 * loops} ops, status on vs off", a, b, ratio)
            if channel.records == before:
                print(f"warning: no status record arrived from {py} ({exporter})", file=sys.stderr)
    table.print()


if __name__ == "__main__":
    sys.exit(main())
