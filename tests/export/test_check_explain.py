"""torchrw check names, per violation, the user's Python line that made the
node and the rewriter that removes it (issue 23)."""
import json
import os
import subprocess

from conftest import BUILD, EXPORTER, PYTHON, TORCH, run_script

TORCHRW = BUILD / "tools" / "torchrw"

# Three layers; TopK's k is computed from a size the export keeps dynamic,
# which TensorRT refuses (K must be an initializer).
SCRIPT = """
import os
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 16)
        self.fc3 = torch.nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.relu(self.fc2(h))
        k = h.shape[0] // 2
        v, i = h.topk(k, dim=0)
        return self.fc3(v)

x = torch.randn(6, 8)
kw = dict(input_names=["x"], output_names=["y"])
torch2 = int(torch.__version__.split(".")[0]) >= 2
if TS or not torch2 or os.environ.get("EXPORTER") == "torchscript":
    torch.onnx.export(Net().eval(), (x,), "model.onnx", opset_version=17,
                      dynamic_axes={"x": {0: "n"}}, verbose=bool(os.environ.get("VERBOSE")),
                      **kw, **({"dynamo": False} if torch2 else {}))
else:
    torch.onnx.export(Net().eval(), (x,), "model.onnx", opset_version=18, dynamo=True,
                      dynamic_shapes={"x": {0: torch.export.Dim("n", min=2, max=64)}}, **kw)
"""
TOPK_LINE = 16  # "v, i = h.topk(k, dim=0)", counting the line TS goes on


def check(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env.pop("LD_PRELOAD", None)
    env["PYTHON"] = PYTHON
    return subprocess.run([str(TORCHRW), "check", "model.onnx", "--backend", "tensorrt:8.5", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def topk_violation(p):
    assert p.returncode == 1, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    topk = [v for v in doc["violations"] if v["op"] == "TopK"]
    assert len(topk) == 1, doc
    return topk[0]


def assert_names_line_and_fix(tmp_path):
    p = check(tmp_path)
    assert f"    at export.py:{TOPK_LINE} (forward): v, i = h.topk(k, dim=0)" in p.stdout, p.stdout
    assert "    fixed by: builtin:torch.topk@tensorrt:<8.6 (rewriters/topk.c:" in p.stdout, p.stdout
    v = topk_violation(check(tmp_path, "--json"))
    assert v["where"]["file"] == "export.py" and v["where"]["line"] == TOPK_LINE, v
    assert [f["stable"] for f in v["fixed_by"]] == ["builtin:torch.topk@tensorrt:<8.6"], v


def test_plain_export_names_the_topk_line_and_its_rewriter(tmp_path):
    # torch.export writes the stack trace; the TorchScript exporter the
    # source range, when asked (verbose=True).
    run_script(tmp_path, SCRIPT, preload=False, VERBOSE="1").check()
    assert_names_line_and_fix(tmp_path)


def test_without_lines_check_says_so(tmp_path):
    if EXPORTER == "torch.export" and TORCH >= (2, 9):
        # torch.export always writes its stack traces: the TorchScript
        # exporter without verbose does not.
        run_script(tmp_path, SCRIPT, preload=False, EXPORTER="torchscript").check()
    else:
        run_script(tmp_path, SCRIPT, preload=False).check()
    v = topk_violation(check(tmp_path, "--json", "--no-fixes"))
    assert v["where"] is None and "no line recorded" in v["where_note"], v
    assert "fixed_by" not in v


def test_source_lines_under_torchrw_keep_the_torchscript_lines(tmp_path):
    # onnxruntime's topk rewriter leaves a k the script computed alone, so
    # the file still has the violation tensorrt's check reports.
    run_script(tmp_path, SCRIPT, backend="onnxruntime", EXPORTER="torchscript",
               TORCHRW_SOURCE_LINES="1").check()
    assert_names_line_and_fix(tmp_path)
