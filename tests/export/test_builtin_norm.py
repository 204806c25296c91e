"""Built-in rewriters of rewriters/norm.c: layer_norm below opset 17 and
group_norm through InstanceNormalization for TensorRT and ncnn."""
import subprocess

import numpy as np
import pytest

from conftest import BUILD, DYNAMIC_SIZES, model_opset, ort_run, run_script, torchscript_only

LAYER_NORM = """
import numpy as np
import torch
import torch.nn.functional as F

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln = torch.nn.LayerNorm((4, 6))
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-1, 1)
    def forward(self, x):
        return self.ln(x), F.layer_norm(x, (6,), eps=1e-3)

torch.manual_seed(0)
model = M().eval()
g = torch.Generator().manual_seed(0)
x = torch.randn(2, 4, 6, generator=g) * 3 + 1
torch.onnx.export(model, (x,), "model.onnx", opset_version=OPSET,
                  input_names=["x"], output_names=["a", "b"],
                  dynamic_axes={"x": {0: "n"}}, **TS)
x2 = torch.randn(5, 4, 6, generator=g)
a2, b2 = model(x2)
np.savez("io.npz", x=x.numpy(), x2=x2.numpy(), a2=a2.detach().numpy(),
         b2=b2.detach().numpy())
"""


def test_layer_norm_below_17_is_spelled_out(tmp_path):
    run = run_script(tmp_path, LAYER_NORM.replace("OPSET", "11"), backend="ncnn").check()
    assert model_opset(run.model()) == 11  # torch.export's file too (opset_conversion.py)
    ops = run.ops()
    for op in ("ReduceMean", "Sub", "Pow", "Add", "Sqrt", "Div", "Mul"):
        assert op in ops, ops
    assert "LayerNormalization" not in ops
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"x": io["x2"]})
    np.testing.assert_allclose(a, io["a2"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b, io["b2"], rtol=1e-5, atol=1e-5)


def test_layer_norm_at_17_is_left_to_torch(tmp_path):
    # (torch 1.13 itself cannot export a LayerNorm without weight at 17.)
    code = LAYER_NORM.replace("OPSET", "17")
    run = run_script(tmp_path, code.replace("F.layer_norm(x, (6,), eps=1e-3)", "x"),
                     backend="ncnn").check()
    assert "LayerNormalization" in run.ops()


def check(path, backend):
    p = subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(path), "--backend", backend],
                       capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def test_layer_norm_for_tensorrt_8_5_is_spelled_out_at_17(tmp_path):
    # TensorRT 8.5's parser has no LayerNormalization at any opset
    # (data/backends/tensorrt-8.5.json); 8.6 and 10.x have it.
    run = run_script(tmp_path, LAYER_NORM.replace("OPSET", "17"), backend="tensorrt:8.5").check()
    assert model_opset(run.model()) == 17
    ops = run.ops()
    assert "LayerNormalization" not in ops and "ReduceMean" in ops, ops
    assert check(run.path("model.onnx"), "tensorrt:8.5") == (0, "")
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"x": io["x2"]})
    np.testing.assert_allclose(a, io["a2"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b, io["b2"], rtol=1e-5, atol=1e-5)
    # The newest TensorRT takes it as it is: nothing rewritten, and it passes.
    code = LAYER_NORM.replace("OPSET", "17").replace("F.layer_norm(x, (6,), eps=1e-3)", "x")
    (tmp_path / "newest").mkdir()
    new = run_script(tmp_path / "newest", code, backend="tensorrt").check()
    assert "LayerNormalization" in new.ops()
    assert check(new.path("model.onnx"), "tensorrt") == (0, "")
    rc, out = check(new.path("model.onnx"), "tensorrt:8.5")
    assert rc == 1 and "LayerNormalization: operator is not supported by tensorrt" in out, out
    assert "fixed by: builtin:torch.layer_norm@tensorrt:<8.6 (rewriters/norm.c:" in out, out


GROUP_NORM = """
import numpy as np
import torch

torch.manual_seed(0)
gn = torch.nn.GroupNorm(4, 8)
with torch.no_grad():
    gn.weight.uniform_(0.5, 1.5)
    gn.bias.uniform_(-1, 1)
plain = torch.nn.GroupNorm(2, 8, affine=False)

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gn, self.plain = gn, plain
    def forward(self, x):
        return self.gn(x), self.plain(x)

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 8, 5, 6, generator=g) * 2 + 1
torch.onnx.export(M().eval(), (x,), "model.onnx", opset_version=11,
                  input_names=["x"], output_names=["a", "b"], DYNAMIC, **TS)
a, b = M().eval()(x)
x2 = torch.randn(3, 8, 4, 7, generator=g)
a2, b2 = M().eval()(x2)
np.savez("io.npz", x=x.numpy(), a=a.detach().numpy(), b=b.detach().numpy(),
         x2=x2.numpy(), a2=a2.detach().numpy(), b2=b2.detach().numpy())
"""


@torchscript_only(DYNAMIC_SIZES)
def test_tensorrt_group_norm_uses_instance_norm_with_dynamic_shapes(tmp_path):
    code = GROUP_NORM.replace("DYNAMIC", 'dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}')
    run = run_script(tmp_path, code, backend="tensorrt").check()
    ops = run.ops()
    assert ops.count("InstanceNormalization") == 2, ops
    io = np.load(run.path("io.npz"))
    for x, a, b in (("x", "a", "b"), ("x2", "a2", "b2")):
        oa, ob = ort_run(run.path("model.onnx"), {"x": io[x]})
        np.testing.assert_allclose(oa, io[a], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ob, io[b], rtol=1e-4, atol=1e-4)


def test_ncnn_group_norm_has_no_shape_computation(tmp_path):
    run = run_script(tmp_path, GROUP_NORM.replace(", DYNAMIC", ""), backend="ncnn").check()
    ops = run.ops()
    assert ops.count("InstanceNormalization") == 2, ops
    # The batch axis never enters a shape computation.
    assert "Shape" not in ops and "Gather" not in ops, ops
    io = np.load(run.path("io.npz"))
    oa, ob = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(oa, io["a"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ob, io["b"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_other_backends_keep_torchs_group_norm(tmp_path, backend):
    run = run_script(tmp_path, GROUP_NORM.replace(", DYNAMIC", ""), backend=backend).check()
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", GROUP_NORM.replace(", DYNAMIC", ""),
                       preload=False).check()
    assert run.ops() == plain.ops()


def test_disable_group_norm(tmp_path):
    code = GROUP_NORM.replace(", DYNAMIC", "")
    run = run_script(tmp_path, code, backend="ncnn",
                     TORCHRW_DISABLE="builtin:torch.group_norm@ncnn").check()
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", code, preload=False).check()
    assert run.ops() == plain.ops()
