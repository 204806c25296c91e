"""What the benchmarks share: the interpreters (one per torch), paired
measurements and the table they print.

Every ratio is measured side by side in one run, alternating the two sides
round by round, and reported as the median of the per-round ratios: the
machine is noisy, and a ratio taken in the same minute is what holds.
"""
import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The two torches the project supports: Debian's and PyPI's (scripts/setup).
DEFAULT_PYTHONS = ["/usr/bin/python3", str(ROOT / ".venv" / "bin" / "python")]

# The TorchScript exporter on every torch (2.9+ defaults to torch.export).
TS = ('import inspect\n'
      'TS = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters '
      'else {}\n')


def parser(doc):
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--python", action="append", dest="pythons",
                    help="an interpreter with torch (repeatable); default: "
                         + " and ".join(DEFAULT_PYTHONS))
    return ap


def torch_of(python):
    """torch.__version__ of an interpreter."""
    out = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def env_with(lib=None, backend="tensorrt", **extra):
    """The caller's environment without torchrw's variables; with lib, the
    library preloaded and backend set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env.pop("LD_PRELOAD", None)
    if lib:
        env["LD_PRELOAD"] = str(lib)
        if backend:
            env["TORCHRW_BACKEND"] = backend
    env.update({k: str(v) for k, v in extra.items()})
    return env


def wall(cmd, env, runs):
    """Mean wall time of running cmd, in seconds."""
    t = time.perf_counter()
    for _ in range(runs):
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t) / runs


def inner(python, code, args, env):
    """Runs code, which prints a time in seconds on its last line."""
    out = subprocess.run([python, "-c", code, *args], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def paired(rounds, measure_a, measure_b):
    """Alternates a and b; returns (median a, median b, median a/b)."""
    a, b = [], []
    for i in range(rounds):
        if i % 2 == 0:
            a.append(measure_a())
            b.append(measure_b())
        else:
            b.append(measure_b())
            a.append(measure_a())
    ratios = [x / y for x, y in zip(a, b)]
    return statistics.median(a), statistics.median(b), statistics.median(ratios)


class Table:
    def __init__(self):
        self.rows = []

    def add(self, torch, label, a, b, ratio):
        self.rows.append((torch, label, a, b, ratio))

    def print(self):
        print(f"{'torch':14} {'benchmark':58} {'with':>11} {'without':>11} {'ratio':>7}")
        for torch, label, a, b, ratio in self.rows:
            print(f"{torch:14} {label:58} {a * 1e3:8.2f} ms {b * 1e3:8.2f} ms {ratio:7.3f}")
