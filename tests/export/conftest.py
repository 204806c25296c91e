"""Shared helpers of the export tests.

Every test runs a real export script in a fresh process of the interpreter
under test (PYTHON: Debian's /usr/bin/python3 with torch 1.13, or a venv's
with torch 2.x) with libtorchrw.so preloaded, then looks at the exported
graph and runs it in ONNX Runtime to compare with PyTorch.  pytest itself
runs where onnxruntime is installed (the venv); the interpreter under test
needs torch and numpy only.

Scripts pass **TS to torch.onnx.export: {"dynamo": False} on torch 2.x,
where torch.onnx.export would otherwise use torch.export's exporter, and
{} on torch 1.x, which has no such argument.  run_script defines TS on the
script's first line (scripts start with an empty line, so line numbers
stay as written).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "data"))
import engines  # noqa: E402  (data/engines.py: the engines on this machine)

BUILD = Path(os.environ.get("TORCHRW_BUILD", ROOT / "build")).resolve()
PRELOAD = BUILD / "lib" / "libtorchrw.so"
PLUGINS = BUILD / "tests" / "plugins"
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")


def _torch_version():
    proc = subprocess.run([PYTHON, "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.exit(f"{PYTHON} cannot import torch:\n{proc.stderr}", 2)
    return proc.stdout.strip().splitlines()[-1]


TORCH_VERSION = _torch_version()
TORCH = tuple(int(p) for p in TORCH_VERSION.split("+")[0].split(".")[:2])
TORCH_SERIES = "%d.%d" % TORCH
RUNTIME = BUILD / "lib" / f"libtorchrw_runtime-torch{TORCH_SERIES}.so"
# TORCHRW_TEST_EXPORTER=torch.export runs the scripts with torch's default
# exporter instead (torch.export from torch 2.9 on): TS is then {}.
EXPORTER = os.environ.get("TORCHRW_TEST_EXPORTER", "torchscript")
if EXPORTER not in ("torchscript", "torch.export"):
    pytest.exit(f"TORCHRW_TEST_EXPORTER={EXPORTER}: torchscript or torch.export", 2)
if EXPORTER == "torch.export" and TORCH < (2, 9):
    pytest.exit(f"torch {TORCH_VERSION} exports through torch.export only when asked; "
                "TORCHRW_TEST_EXPORTER=torch.export needs torch 2.9 or newer", 2)
TS_LINE = 'TS = {"dynamo": False}' if TORCH >= (2, 0) and EXPORTER == "torchscript" else "TS = {}"

# Tests of what only torch's tracer does (prim::PythonOp, traced Python
# ints, TorchScript's opsets below 18...) say so; the torch.export leg
# skips them with their reason.
def torchscript_only(reason):
    return pytest.mark.skipif(EXPORTER != "torchscript", reason=reason)


# The two reasons most such tests have (docs/torch-export.md: "What works where").
DYNAMIC_SIZES = (
    "the graph under dynamic_axes: the TorchScript tracer records the example's "
    "sizes, torch.export keeps a dimension declared dynamic symbolic, and a "
    "rewriter that needs it constant hands the call to the original there")
TORCHSCRIPT_FAILURE = (
    "pins a failure of torch's TorchScript exporter below opset 18; torch.export's "
    "exporter builds at opset 18 and has no such failure")

# Variables a test did not ask for must not leak in from the caller.
_TRW_VARS = ("TORCHRW_BACKEND", "TORCHRW_CONFIG", "TORCHRW_PLUGINS",
             "TORCHRW_PYTHON", "TORCHRW_DISABLE", "TORCHRW_LOG",
             "TORCHRW_REPORT", "TORCHRW_TRACE")


class Run:
    def __init__(self, proc, workdir):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.dir = workdir

    def path(self, name):
        return self.dir / name

    def model(self, name="model.onnx"):
        return onnx.load(str(self.dir / name))

    def ops(self, name="model.onnx"):
        return [n.op_type for n in self.model(name).graph.node]

    def check(self):
        assert self.returncode == 0, f"export failed:\n{self.stderr}"
        return self


def constants(model):
    """Every constant of model's main graph, by value name: Constant nodes'
    and initializers (torch.export's exporter folds constants into those)."""
    from onnx import numpy_helper

    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def squeeze_axes(model):
    """Per Squeeze node: its axes, from the attribute (opset < 13) or the
    constant second input; None when it has none or they are computed."""
    consts = constants(model)
    out = []
    for n in model.graph.node:
        if n.op_type != "Squeeze":
            continue
        attr = [list(a.ints) for a in n.attribute if a.name == "axes"]
        if attr:
            out.append(attr[0])
        elif len(n.input) > 1 and n.input[1] in consts:
            out.append(consts[n.input[1]].reshape(-1).tolist())
        else:
            out.append(None)
    return out


def model_opset(model):
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def with_ts(code):
    """code, dedented, with TS defined on its first line."""
    code = textwrap.dedent(code)
    if code.startswith("\n"):
        return TS_LINE + code
    return TS_LINE + "; " + code


def run_script(tmp_path, code, backend=None, preload=True, **env_extra):
    """Writes code to tmp_path/export.py and runs it there."""
    script = tmp_path / "export.py"
    script.write_text(with_ts(code))
    env = {k: v for k, v in os.environ.items() if k not in _TRW_VARS}
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = str(PRELOAD)
    if backend:
        env["TORCHRW_BACKEND"] = backend
    env.update({k: str(v) for k, v in env_extra.items()})
    proc = subprocess.run([PYTHON, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    return Run(proc, tmp_path)


def ort_run(model_path, inputs):
    """Runs model_path in ONNX Runtime (CPU); inputs maps names to numpy
    arrays.  Returns the outputs as numpy arrays in the graph's output
    order: floats as float64, integers and booleans as int64."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    feeds = {name: np.ascontiguousarray(arr) for name, arr in inputs.items()}
    result = []
    for out in session.run(None, feeds):
        out = np.asarray(out)
        result.append(out.astype(np.float64) if out.dtype.kind == "f" else out.astype(np.int64))
    return result


def skip_without(module):
    """Skips the test when PYTHON (the interpreter the exports run in)
    cannot import module (the zoo's hub libraries:
    scripts/requirements-zoo.txt installs them)."""
    proc = subprocess.run([PYTHON, "-c", "import importlib.util, sys; "
                           f"sys.exit(importlib.util.find_spec({module!r}) is None)"])
    if proc.returncode != 0:
        pytest.skip(f"{PYTHON} has no {module} (scripts/requirements-zoo.txt installs it)")


def check_ncnn(path):
    """`torchrw check PATH --backend ncnn` with the repository's tables, in
    a bare environment: (exit status, what it said)."""
    p = subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(path), "--backend", "ncnn"],
                       capture_output=True, text=True,
                       env={"TORCHRW_DATA": str(ROOT / "data"), "PATH": "/usr/bin:/bin"})
    return p.returncode, p.stdout + p.stderr


def ncnn_matches(path, feeds, workdir, want, rtol=1e-4, atol=1e-4, note=""):
    """Runs path in ncnn (data/engines.py: pnnx, then ncnn's extractor, in
    workdir) on feeds and asserts that its outputs match want, dtypes
    aside (ncnn computes in float32 and takes ints as int32).  Skips the
    test, with note after the reason, where ncnn is not installed."""
    reason = engines.missing("ncnn")
    if reason:
        pytest.skip(reason + note)
    got = engines.run("ncnn", path, feeds, workdir)
    c = engines.compare(got, want, rtol=rtol, atol=atol, check_dtype=False)
    assert c.ok, str(c)


def read_report(path):
    """The records of a TORCHRW_REPORT file (JSON Lines: one JSON object
    per trace, appended by every process that exports)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def save_inputs(path, **arrays):
    np.savez(path, **arrays)


@pytest.fixture(scope="session", autouse=True)
def built():
    if not PRELOAD.exists():
        pytest.exit(f"{PRELOAD} is missing: build first (scripts/test does)", 2)
    if not RUNTIME.exists():
        pytest.exit(f"{RUNTIME} is missing: {BUILD} has no runtime for torch "
                    f"{TORCH_VERSION} ({PYTHON}); scripts/test builds both", 2)
