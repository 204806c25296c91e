"""Built-in rewriter of rewriters/resize.c: interpolate with size= becomes
a Resize with constant scales for ncnn."""
import numpy as np
import onnx
from onnx import numpy_helper

from conftest import ort_run, run_script, torchscript_only

EXPORT = """
import numpy as np
import torch
import torch.nn.functional as F

class M(torch.nn.Module):
    def forward(self, x):
        h, w = x.shape[2:]
        return (F.interpolate(x, size=(h * 2, w * 2)),
                F.interpolate(x, size=(6, 9), mode="bilinear", align_corners=False),
                F.interpolate(x, size=(7, 11), mode="bilinear", align_corners=True),
                F.interpolate(x, size=(8, 13), mode="nearest"))

x = torch.randn(1, 2, 4, 6, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=["a", "b", "c", "d"], **TS)
np.savez("io.npz", x=x.numpy(), **{k: o.numpy() for k, o in zip("abcd", M()(x))})
"""


def _resize_inputs(model):
    """For each Resize, (scales, sizes) as arrays or None when absent."""
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t)
              for n in model.graph.node if n.op_type == "Constant"}
    consts.update({t.name: numpy_helper.to_array(t) for t in model.graph.initializer})
    out = []
    for n in model.graph.node:
        if n.op_type == "Resize":
            scales = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            sizes = n.input[3] if len(n.input) > 3 and n.input[3] else None
            out.append((scales, sizes))
    return out


@torchscript_only("Resize's inputs are the exporter's translation's choice, and "
                  "torch.export's translates upsample with scales to a Resize with sizes")
def test_ncnn_resize_has_constant_scales_and_no_sizes(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="ncnn").check()
    resizes = _resize_inputs(run.model())
    assert len(resizes) == 4
    for scales, sizes in resizes:
        assert sizes is None and scales is not None and scales.size == 4, resizes
    assert "Shape" not in run.ops()
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"]})
    for k, out in zip("abcd", outs):
        assert out.shape == io[k].shape, k
        np.testing.assert_allclose(out, io[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_other_backends_keep_sizes(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="tensorrt").check()
    assert any(sizes is not None for _, sizes in _resize_inputs(run.model()))
