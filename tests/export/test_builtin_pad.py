"""Built-in rewriter of rewriters/pad.c: constant padding for TensorRT
without a Pad whose pads are computed."""
import numpy as np

from conftest import DYNAMIC_SIZES, ort_run, run_script, torchscript_only

EXPORT = """
import numpy as np
import torch
import torch.nn.functional as F

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.zp = torch.nn.ZeroPad2d((0, 2, 1, 0))
    def forward(self, x):
        return (F.pad(x, (1, 2)), F.pad(x, (1, 1, 2, 0), value=-3.5), self.zp(x),
                F.pad(x, (-1, 2, 0, 0, 1, 1)), torch.constant_pad_nd(x, (0, 1, 1, 0), 7.0))

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 3, 4, 5, generator=g)
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=[f"o{i}" for i in range(5)],
                  dynamic_axes={"x": {0: "n", 2: "h"}}, **TS)
x2 = torch.randn(1, 3, 6, 5, generator=g)
np.savez("io.npz", x=x.numpy(), x2=x2.numpy(),
         **{f"o{i}": o.numpy() for i, o in enumerate(M()(x))},
         **{f"p{i}": o.numpy() for i, o in enumerate(M()(x2))})
"""


@torchscript_only(DYNAMIC_SIZES)
def test_tensorrt_pad_has_no_computed_pads(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="tensorrt").check()
    ops = run.ops()
    assert "Pad" not in ops, ops
    assert "ConstantOfShape" in ops and "Concat" in ops
    io = np.load(run.path("io.npz"))
    for x, p in (("x", "o"), ("x2", "p")):
        outs = ort_run(run.path("model.onnx"), {"x": io[x]})
        for i, out in enumerate(outs):
            np.testing.assert_allclose(out, io[f"{p}{i}"], rtol=1e-6, err_msg=f"{p}{i}")


def test_other_backends_keep_pad(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="ncnn").check()
    assert "Pad" in run.ops()


def test_disable_pad(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="tensorrt",
                     TORCHRW_DISABLE="builtin:aten::pad@tensorrt,builtin:torch.constant_pad_nd@tensorrt").check()
    assert "Pad" in run.ops()
