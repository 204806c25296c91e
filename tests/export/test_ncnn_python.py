"""ncnn's rewriters of Python functions (issue 4): Tensor.size/shape as
static ints, F.normalize without expand_as and on a kept batch axis."""
import numpy as np

from conftest import DYNAMIC_SIZES, ort_run, run_script, torchscript_only

SHAPES = """
import numpy as np, torch
import torch.nn.functional as F
class M(torch.nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape
        y = x.view(n, c, h * w)
        return F.normalize(y, dim=1) * x.size(3), F.normalize(x, p=1.0, dim=-1, eps=1e-6)
x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(0))
# Dynamic axes: torch's own export computes the view's shape with Shape ops.
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  dynamic_axes={"x": {2: "h", 3: "w"}}, **TS)
a, b = M()(x)
np.savez("io.npz", x=x.numpy(), a=a.numpy(), b=b.numpy())
"""


@torchscript_only(DYNAMIC_SIZES)
def test_ncnn_sizes_are_static_and_normalize_has_no_expand(tmp_path):
    run = run_script(tmp_path, SHAPES, backend="ncnn", TORCHRW_LOG="info").check()
    ops = run.ops()
    assert "Shape" not in ops and "Expand" not in ops and "Gather" not in ops, ops
    for name in ("builtin:torch.Tensor.size@ncnn", "builtin:torch.Tensor.shape@ncnn",
                 "builtin:torch.nn.functional.normalize@ncnn"):
        assert f"fired {name}" in run.stderr
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(a, io["a"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, io["b"], rtol=1e-5, atol=1e-6)


def test_other_backends_keep_dynamic_shapes(tmp_path):
    run = run_script(tmp_path, SHAPES, backend="tensorrt").check()
    assert "Shape" in run.ops()
    io = np.load(run.path("io.npz"))
    x = np.concatenate([io["x"], io["x"]], axis=3)  # another width at run time
    a, _ = ort_run(run.path("model.onnx"), {"x": x})
    assert a.shape == (1, 3, 40)


def test_size_rewriter_can_be_switched_off(tmp_path):
    run = run_script(tmp_path, SHAPES, backend="ncnn",
                     TORCHRW_DISABLE="torch.Tensor.size,torch.Tensor.shape").check()
    assert "Shape" in run.ops()
