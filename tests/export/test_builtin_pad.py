"""Built-in rewriter of rewriters/pad.c: constant padding for TensorRT
without a Pad whose pads are computed."""
import numpy as np

from conftest import DYNAMIC_SIZES, EXPORTER, ort_run, run_script, torchscript_only

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


# torchvision swin's shifted-window padding: the pads are computed from the
# input's sizes while tracing, so torch's tracer stashes them as traced
# values.  Two such calls used to fail torch's own assert
# (`list_trace[idx] == nullptr`, tracer.cpp): the rewriter never reached the
# tracer's kernel that takes the stash, and the second call stashed again.
WINDOW = """
import numpy as np, torch
import torch.nn.functional as F

class Window(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = size
    def forward(self, x):
        B, H, W, C = x.shape
        pad_r = (self.size - W % self.size) % self.size
        pad_b = (self.size - H % self.size) % self.size
        return F.pad(x, (0, 0, 0, pad_r, 0, pad_b))

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = Window(4), Window(3)
    def forward(self, x):
        # a constant pad beside them, which the rewriter still takes
        return self.b(self.a(x) + 1.0), F.pad(x, (1, 2), value=0.5)

g = torch.Generator().manual_seed(0)
x = torch.randn(1, 6, 7, 3, generator=g)
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=["y", "z"], dynamic_axes={"x": {1: "h", 2: "w"}}, **TS)
x2 = torch.randn(1, 9, 5, 3, generator=g)
np.savez("io.npz", x=x.numpy(), x2=x2.numpy(), y=M()(x)[0].numpy(), z=M()(x)[1].numpy(),
         y2=M()(x2)[0].numpy(), z2=M()(x2)[1].numpy())
"""


def test_tensorrt_pads_from_traced_sizes_go_to_the_original(tmp_path):
    run = run_script(tmp_path, WINDOW, backend="tensorrt", TORCHRW_LOG="info").check()
    io = np.load(run.path("io.npz"))
    y, z = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-6)
    np.testing.assert_allclose(z, io["z"], rtol=1e-6)
    # The window pads follow the input (dynamic axes): another size pads to
    # its own multiple of the window.
    y2, z2 = ort_run(run.path("model.onnx"), {"x": io["x2"]})
    np.testing.assert_allclose(y2, io["y2"], rtol=1e-6)
    np.testing.assert_allclose(z2, io["z2"], rtol=1e-6)
    if EXPORTER == "torchscript":
        assert "the pads are computed from traced sizes" in run.stderr
        # Two window pads stay Pad; the constant one is rewritten.
        assert run.ops().count("Pad") == 2, run.ops()
