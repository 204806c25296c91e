"""Weights stored outside the ONNX file (external data) and the backends
whose engines cannot read them.

torch.export's exporter stores the weights in model.onnx.data by default,
and pnnx (ncnn's converter) cannot read that: it writes garbage weights
(data/backends/ncnn.json, graph.external_data).  Under such a backend,
torchrw has torch.onnx.export write them into the file, unless the caller
says otherwise.  The backends of those table rules are the ones the
library inlines for (shim/core/names.c)."""
import json
import subprocess
from pathlib import Path

import onnx
import pytest

from conftest import BUILD, EXPORTER, ROOT, run_script

pytestmark = pytest.mark.skipif(
    EXPORTER != "torch.export", reason="the TorchScript exporter stores weights outside only past 2 GB")

MODEL = """
import torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval()
torch.onnx.export(m, (torch.randn(1, 3, 16, 16),), "model.onnx", **KW)
"""


def tables_without_external_data():
    out = set()
    for path in (ROOT / "data" / "backends").glob("*.json"):
        table = json.loads(path.read_text())
        if table.get("graph", {}).get("external_data", {}).get("supported") is False:
            out.add(table["backend"])
    return out


def outside(run):
    """Names of the initializers stored outside run's model.onnx."""
    model = onnx.load(str(run.path("model.onnx")), load_external_data=False)
    return [t.name for t in model.graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL]


def test_the_tables_and_the_library_name_the_same_backends():
    assert tables_without_external_data() == {"ncnn"}


@pytest.mark.parametrize("backend", sorted(tables_without_external_data()))
def test_weights_are_written_into_the_file_for_a_backend_that_cannot_read_them(tmp_path, backend):
    (tmp_path / "plain").mkdir()
    # What torch does without torchrw (the exporter's default).
    plain = run_script(tmp_path / "plain", MODEL.replace("**KW", ""), preload=False).check()
    assert outside(plain), "torch stored every weight in the file: the test shows nothing"

    run = run_script(tmp_path, MODEL.replace("**KW", ""), backend=backend, TORCHRW_LOG="info").check()
    assert outside(run) == [], "weights outside the file under " + backend
    assert not Path(run.path("model.onnx.data")).exists()
    assert "cannot read weights stored outside the ONNX file" in run.stderr, run.stderr
    check = subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(run.path("model.onnx")),
                            "--backend", backend], capture_output=True, text=True)
    assert "external" not in check.stdout + check.stderr, check.stdout


def test_the_callers_external_data_wins(tmp_path):
    run = run_script(tmp_path, MODEL.replace("**KW", "external_data=True"), backend="ncnn").check()
    assert outside(run), "the caller asked for external data"


def test_other_backends_keep_torchs_default(tmp_path):
    run = run_script(tmp_path, MODEL.replace("**KW", ""), backend="openvino").check()
    assert outside(run)
