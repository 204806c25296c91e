"""torchrw explain: both exports checked and, where the backend's engine
runs here, run in it and held against PyTorch (issue 23); and
TORCHRW_SAMPLE, which gives it PyTorch's outputs."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import BUILD, EXPORTER, PYTHON, ROOT, TORCH, run_script

TORCHRW = BUILD / "tools" / "torchrw"


def has(module):
    return subprocess.run([PYTHON, "-c", f"import {module}"], capture_output=True).returncode == 0


def explain(tmp_path, backend, example, *args):
    """torchrw explain --json on examples/<example> (copied to tmp_path),
    with the leg's exporter; (exit status, the JSON document, stderr)."""
    shutil.copy(ROOT / "examples" / example, tmp_path / example)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env.pop("LD_PRELOAD", None)
    env["PYTHON"] = PYTHON
    exporter = "torch.export" if EXPORTER == "torch.export" else "torchscript"
    p = subprocess.run([str(TORCHRW), "explain", "--backend", backend, "--output", "m.onnx",
                        "--json", *args, "--", PYTHON, example, "m.onnx", exporter],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    return p.returncode, json.loads(p.stdout), p.stderr


def test_both_files_run_in_onnxruntime_and_match_pytorch(tmp_path):
    rc, doc, err = explain(tmp_path, "onnxruntime", "export_topk.py")
    assert rc == 0 and doc["after"] == 0, doc
    sample = np.load(tmp_path / "m.sample.npz")
    assert sample["in_0"].shape == (6, 8) and sample["out_0"].shape == (3, 4)
    if not has("onnxruntime"):
        assert doc["engine"] is None and "onnxruntime" in doc["engine_note"], doc
        return
    engine = doc["engine"]
    assert engine["name"] == "onnxruntime", doc
    for who, name in (("plain", "m.plain.onnx"), ("torchrw", "m.onnx")):
        r = engine[who]
        assert r["file"] == name and r["stage"] == "match" and r["ok"], doc
        assert r["max_rel"] < 1e-5, doc


def test_tensorrt_does_not_run_here_and_the_check_is_all(tmp_path):
    rc, doc, _ = explain(tmp_path, "tensorrt:8.5", "export_topk.py")
    assert doc["engine"] is None and "TensorRT does not run here" in doc["engine_note"], doc
    (row,) = [r for r in doc["violations"] if r["violation"]["op"] == "TopK"]
    assert [f["stable"] for f in row["violation"]["fixed_by"]] == \
        ["builtin:torch.topk@tensorrt:<8.6"], doc
    if EXPORTER == "torch.export":
        # k follows the dynamic batch as a symbol there, which the
        # rewriter cannot make a constant; and 8.5 reads opsets up to 17.
        assert rc == 1 and row["state"] == "left", doc
        assert any("opset 18" in r["violation"]["rule"] for r in doc["violations"]), doc
    else:
        assert rc == 0 and doc["before"] == 1 and doc["after"] == 0, doc
        assert row["state"] == "fixed", doc


@pytest.mark.skipif(TORCH < (2, 0) or EXPORTER == "torch.export",
                    reason="plain torch 2.x cannot export the attention at opset 13 (it "
                           "goes through scaled_dot_product_attention, from opset 14); torch "
                           "1.13 does not call it, and torch.export writes opset 18")
def test_attention_only_torchrw_exports_runs_in_ncnn(tmp_path):
    if not has("ncnn"):
        pytest.skip("ncnn and pnnx are not installed for " + PYTHON)
    rc, doc, err = explain(tmp_path, "ncnn", "export_attention.py")
    assert rc == 0, doc
    assert doc["plain"] is None and doc["before"] is None, doc
    assert "the plain export failed" in doc["plain_note"], doc
    assert "scaled_dot_product_attention" in err  # torch's own words, on stderr
    engine = doc["engine"]
    assert engine["plain"]["stage"] == "export", doc
    assert engine["torchrw"]["ok"] and engine["torchrw"]["max_rel"] < 1e-3, doc


# TORCHRW_SAMPLE on its own: the model and torch's random state are as if
# the sample had not been taken.
SAMPLE = """
import json, numpy as np, torch
torch.manual_seed(0)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.drop = torch.nn.Dropout(0.5)
    def forward(self, x, extra):
        return self.drop(self.fc(x)), (extra * 2,)

net = Net()                      # left in training mode
x, extra = torch.randn(2, 4), torch.randn(3)
torch.onnx.export(net, (x, {"extra": extra}), "m.onnx", input_names=["x", "extra"], **TS)
with torch.no_grad():
    want = net.eval()(x, extra)
print(json.dumps({"after": torch.rand(1).item(), "training": net.fc.training}))
np.savez("want.npz", y=want[0].numpy(), z=want[1][0].numpy())
"""


def test_sample_is_pytorchs_and_leaves_the_model_and_rng_alone(tmp_path):
    if EXPORTER == "torch.export":
        pytest.skip("the TorchScript exporter's last-dict-is-keywords call")
    run = run_script(tmp_path, SAMPLE, backend="onnxruntime", TORCHRW_SAMPLE="1").check()
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", SAMPLE, preload=False).check()
    got, ref = (json.loads(r.stdout.splitlines()[-1]) for r in (run, plain))
    # training mode back, and torch.rand after the export as without the sample
    assert got == ref, (got, ref)
    sample, want = np.load(tmp_path / "m.sample.npz"), np.load(tmp_path / "want.npz")
    assert sorted(sample.files) == ["in_0", "in_1", "out_0", "out_1"], sample.files
    np.testing.assert_array_equal(sample["out_0"], want["y"])  # eval mode: no dropout
    np.testing.assert_array_equal(sample["out_1"], want["z"])
    assert sample["in_1"].shape == (3,)


def test_sample_failure_is_a_warning_and_the_export_goes_on(tmp_path):
    code = """
import torch
class Net(torch.nn.Module):
    def forward(self, x):
        return x.to(torch.bfloat16)  # numpy has no bfloat16
torch.onnx.export(Net(), (torch.randn(2),), "m.onnx", opset_version=13, **TS)
print("EXPORTED")
"""
    run = run_script(tmp_path, code, backend="onnxruntime", TORCHRW_SAMPLE="1").check()
    assert "EXPORTED" in run.stdout and (tmp_path / "m.onnx").exists()
    assert "TORCHRW_SAMPLE: no sample of m.onnx" in run.stderr, run.stderr
    assert not (tmp_path / "m.sample.npz").exists()
