"""torch.export's exporter and the opset asked for (shim/adapter/
opset_conversion.py).

torch.onnx.export(..., opset_version=N) through torch.export builds the
graph at opset 18 and asks onnxscript to convert it down; below 18 that
is ONNX's C converter, which refuses nearly every real graph, so torch
writes opset 18 whatever was asked.  Under torchrw the graph is converted
node by node; what cannot be is left to torch's converter, with the
reason."""
import subprocess

import numpy as np
import onnx
import pytest

from conftest import BUILD, EXPORTER, model_opset, ort_run, run_script

pytestmark = pytest.mark.skipif(
    EXPORTER != "torch.export", reason="the TorchScript exporter writes the opset asked for")

# One of each kind of change between opset 11 and 18 that torch's graphs
# have: BatchNormalization 15, HardSwish 14 and Mish 18 (ONNX functions),
# Resize 18 (roi and scales inputs), Pad 18, Split 18, Softmax 13 over a
# middle axis, ReduceMean 18 (axes input), Pow 15, Shape 15 (start/end, from
# the dynamic batch), Reshape 14 (allowzero), Unsqueeze/Squeeze 13, Relu 14.
MODEL = """
import numpy as np
import torch
import torch.nn.functional as F

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)

    def forward(self, x):
        y = F.mish(F.hardswish(self.bn(self.conv(x))))
        y = F.pad(F.interpolate(y, scale_factor=2.0, mode="nearest"), (1, 1, 1, 1))
        a, b = y.chunk(2, dim=1)
        s = torch.softmax(a, dim=1) + torch.softmax(b, dim=-1)
        z = (s - s.mean(dim=(2, 3), keepdim=True)).pow(2)
        n = z.reshape(z.shape[0], -1)
        return n.unsqueeze(1).squeeze(1).relu()

torch.manual_seed(0)
m = M().eval()
with torch.no_grad():
    m.bn.running_mean.uniform_(-1, 1)
    m.bn.running_var.uniform_(0.5, 2)
x, x2 = torch.randn(2, 3, 8, 8), torch.randn(5, 3, 8, 8)
with torch.no_grad():
    np.savez("io.npz", x=x.numpy(), x2=x2.numpy(), y=m(x).numpy(), y2=m(x2).numpy())
torch.onnx.export(m, (x,), "model.onnx", opset_version=OPSET, input_names=["x"],
                  dynamic_axes={"x": {0: "batch"}})
"""


def check_violations(path, backend):
    out = subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(path), "--backend", backend],
                         capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize("opset", [11, 13])
def test_the_graph_is_written_at_the_opset_asked_for(tmp_path, opset):
    code = MODEL.replace("OPSET", str(opset))
    if opset == 11:  # once is enough to show it (CI time)
        (tmp_path / "plain").mkdir()
        plain = run_script(tmp_path / "plain", code, preload=False).check()
        assert model_opset(plain.model()) == 18, \
            "torch converted it itself: the test shows nothing"

    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_LOG="info").check()
    model = run.model()
    assert model_opset(model) == opset
    assert f"converted the exported graph down to opset {opset}" in run.stderr, run.stderr
    onnx.checker.check_model(model, full_check=True)
    ops = set(run.ops())
    assert not ops & {"HardSwish", "Mish", "CastLike"}, ops
    io = np.load(run.path("io.npz"))
    for x, y in (("x", "y"), ("x2", "y2")):
        got, = ort_run(run.path("model.onnx"), {"x": io[x]})
        np.testing.assert_allclose(got, io[y], rtol=1e-4, atol=1e-5)
    rc, report = check_violations(run.path("model.onnx"), "tensorrt")
    assert rc == 0, report


REFUSED = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x, i):
        return x.clone().index_put_((i,), torch.ones(3), accumulate=True).relu()

x, i = torch.randn(6), torch.tensor([0, 2, 2])
with torch.no_grad():
    np.savez("io.npz", x=x.numpy(), i=i.numpy(), y=M()(x, i).numpy())
torch.onnx.export(M(), (x, i), "model.onnx", opset_version=11, input_names=["x", "i"])
"""


def test_a_graph_it_cannot_convert_is_left_to_torch_with_the_reason(tmp_path):
    # ScatterND's reduction (opset 16) has no equivalent at 11.
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", REFUSED, preload=False).check()
    run = run_script(tmp_path, REFUSED, backend="tensorrt", TORCHRW_LOG="info").check()
    assert "cannot convert the exported graph down to opset 11: ScatterND node" in run.stderr, \
        run.stderr
    assert "attribute reduction has no equivalent at opset 11" in run.stderr
    # Left as torch leaves it: the same graph, at 18, and right.
    assert model_opset(run.model()) == model_opset(plain.model()) == 18
    assert sorted(run.ops()) == sorted(plain.ops())
    io = np.load(run.path("io.npz"))
    got, = ort_run(run.path("model.onnx"), {"x": io["x"], "i": io["i"]})
    np.testing.assert_allclose(got, io["y"], rtol=1e-6)


def test_an_opset_above_the_one_built_at_is_left_to_onnxscript(tmp_path):
    # 18 needs no conversion, 20 an upward one, which onnxscript's does.
    code = MODEL.replace("opset_version=OPSET", "opset_version=20")
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_LOG="info").check()
    assert model_opset(run.model()) == 20
    assert "exported graph" not in run.stderr, run.stderr
