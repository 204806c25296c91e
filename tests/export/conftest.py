"""Shared helpers of the export tests.

Every test runs a real export script in a fresh /usr/bin/python3 process
with libtorchrw.so preloaded, then looks at the exported graph and runs it
in ONNX Runtime (tests/ort/run.js, Node.js) to compare with PyTorch.
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
BUILD = Path(os.environ.get("TORCHRW_BUILD", ROOT / "build")).resolve()
PRELOAD = BUILD / "lib" / "libtorchrw.so"
PLUGINS = BUILD / "tests" / "plugins"
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")
ORT_RUNNER = ROOT / "tests" / "ort" / "run.js"

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


def run_script(tmp_path, code, backend=None, preload=True, **env_extra):
    """Writes code to tmp_path/export.py and runs it there."""
    script = tmp_path / "export.py"
    script.write_text(textwrap.dedent(code))
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


_DTYPES = {np.float32: "float32", np.float64: "float64", np.int64: "int64",
           np.int32: "int32", np.bool_: "bool", np.uint8: "uint8"}


def ort_run(model_path, inputs):
    """Runs model_path in ONNX Runtime; inputs maps names to numpy arrays.
    Returns the outputs as numpy arrays, in the graph's output order."""
    feeds = {}
    for name, arr in inputs.items():
        arr = np.ascontiguousarray(arr)
        dtype = _DTYPES[arr.dtype.type]
        data = arr.astype(np.uint8) if dtype == "bool" else arr
        feeds[name] = {"dtype": dtype, "dims": list(arr.shape),
                       "data": data.ravel().tolist()}
    req = json.dumps({"model": str(model_path), "inputs": feeds})
    proc = subprocess.run(["node", str(ORT_RUNNER)], input=req,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ONNX Runtime failed: {proc.stderr}"
    outs = json.loads(proc.stdout)["outputs"]
    result = []
    for spec in outs:
        arr = np.array(spec["data"], dtype=np.float64 if spec["dtype"] not in
                       ("int64", "int32", "bool", "uint8") else np.int64)
        result.append(arr.reshape(spec["dims"]))
    return result


def save_inputs(path, **arrays):
    np.savez(path, **arrays)


@pytest.fixture(scope="session", autouse=True)
def built():
    if not PRELOAD.exists():
        pytest.exit(f"{PRELOAD} is missing: build first (scripts/test does)", 2)
    if not (ROOT / "tests" / "ort" / "node_modules" / "onnxruntime-node").exists():
        pytest.exit("onnxruntime-node is missing: run "
                    "'npm install --ignore-scripts' in tests/ort", 2)
