"""Built-in rewriter of rewriters/linear.c: linear as Gemm for ncnn."""
import numpy as np

from conftest import DYNAMIC_SIZES, ort_run, run_script, torchscript_only

EXPORT = """
import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)
fc = torch.nn.Linear(6, 4)
w = torch.randn(3, 6)

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = fc
    def forward(self, x):
        return self.fc(x), F.linear(x, w), self.fc(x[:, 0]), F.linear(x[:, 0], w)

x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=["a", "b", "c", "d"], dynamic_axes={"x": {0: "n"}}, **TS)
x2 = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    outs = M()(x2)
np.savez("io.npz", x2=x2.numpy(), **{k: o.numpy() for k, o in zip("abcd", outs)})
"""


@torchscript_only(DYNAMIC_SIZES)
def test_ncnn_linear_is_gemm(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="ncnn").check()
    ops = run.ops()
    assert ops.count("Gemm") == 4 and "MatMul" not in ops, ops
    assert "Shape" not in ops, ops
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x2"]})
    for k, out in zip("abcd", outs):
        np.testing.assert_allclose(out, io[k], rtol=1e-5, atol=1e-5, err_msg=k)


def test_other_backends_keep_matmul(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="onnxruntime").check()
    assert "MatMul" in run.ops()


def test_disable_linear(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="ncnn",
                     TORCHRW_DISABLE="builtin:aten::linear@ncnn").check()
    assert "MatMul" in run.ops()


FIVE_D = """
import torch
torch.manual_seed(0)
fc = torch.nn.Linear(6, 4)
x = torch.randn(1, 2, 3, 5, 6)
torch.onnx.export(fc, (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
"""


def test_ncnn_leaves_a_5d_linear_to_the_original(tmp_path):
    # ncnn holds at most 4 dims: a reshape back to 5 would not convert
    # (swin3d_t's linears on (B, D, H, W, C)).
    run = run_script(tmp_path, FIVE_D, backend="ncnn", TORCHRW_LOG="info").check()
    assert "leaves aten::linear to the original: a 5-D input" in run.stderr, run.stderr
    assert "Reshape" not in run.ops(), run.ops()
