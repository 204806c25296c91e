"""ncnn has no linear built-in: pnnx folds torch's own export of a linear
over a 3-D or 4-D input (MatMul, and Add for the bias) into ncnn's
InnerProduct itself, and ncnn runs it.  The built-in that turned it into
Reshape -> Gemm -> Reshape (mmdeploy's, for the older onnx2ncnn converter)
stopped pnnx's fuse_multiheadattention from matching timm's ViT attention
(Linear -> 5-dim reshape -> permute (2, 0, 3, 1, 4) -> unbind ...), so a
file that ran in ncnn did not load under torchrw (issue 21)."""
import numpy as np

from conftest import ncnn_matches, run_script


EXPORT = """
import numpy as np
import torch
import torch.nn.functional as F

torch.manual_seed(0)

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 4)
        self.fc4 = torch.nn.Linear(6, 5)
        self.w = torch.nn.Parameter(torch.randn(3, 6))
    def forward(self, x, z):
        return (self.fc(x), F.linear(x, self.w), self.fc(x[:, 0]), F.linear(x[:, 0], self.w),
                self.fc4(z), F.linear(z, self.w))

m = M().eval()
x, z = torch.randn(1, 5, 6), torch.randn(1, 2, 3, 6)
with torch.no_grad():
    outs = m(x, z)
kw = dict(TS, opset_version=13) if TS else {}
torch.onnx.export(m, (x, z), "model.onnx", input_names=["x", "z"], **kw)
np.savez("io.npz", x=x.numpy(), z=z.numpy(), **{f"y{i}": o.numpy() for i, o in enumerate(outs)})
"""


def test_ncnn_runs_torchs_own_linear(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="ncnn", TORCHRW_LOG="info").check()
    assert "aten::linear" not in run.stderr, run.stderr
    assert "MatMul" in run.ops() and "Reshape" not in run.ops(), run.ops()
    io = np.load(run.path("io.npz"))
    want = [io[f"y{i}"] for i in range(6)]
    ncnn_matches(run.path("model.onnx"), {"x": io["x"], "z": io["z"]}, tmp_path / "ncnn", want,
                 rtol=1e-4, atol=1e-5)
