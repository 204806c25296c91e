"""Built-in rewriter of rewriters/pooling.c: adaptive_avg_pool2d with static
kernels."""
import numpy as np

from conftest import DYNAMIC_SIZES, TORCHSCRIPT_FAILURE, ort_run, run_script, torchscript_only

EXPORT = """
import numpy as np
import torch
import torch.nn.functional as F

class M(torch.nn.Module):
    def forward(self, x):
        return (F.adaptive_avg_pool2d(x, (2, 3)), F.adaptive_avg_pool2d(x, 1),
                F.adaptive_avg_pool2d(x, (3, 4)), F.adaptive_avg_pool2d(x[0], (5, 2)))

x = torch.randn(2, 3, 8, 9, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=["a", "b", "c", "d"], DYNAMIC, **TS)
np.savez("io.npz", x=x.numpy(), **{k: o.numpy() for k, o in zip("abcd", M()(x))})
"""


def _numerics(run):
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"]})
    for k, out in zip("abcd", outs):
        np.testing.assert_allclose(out, io[k], rtol=1e-5, atol=1e-6, err_msg=k)


@torchscript_only(DYNAMIC_SIZES)
def test_adaptive_pool_becomes_static_average_pool(tmp_path):
    code = EXPORT.replace("DYNAMIC", 'dynamic_axes={"x": {0: "n"}}')
    run = run_script(tmp_path, code, backend="tensorrt").check()
    ops = run.ops()
    assert ops.count("AveragePool") == 1, ops
    assert ops.count("GlobalAveragePool") == 1, ops
    # 8x9 -> 3x4 and 8 -> 5 do not divide: windows, averaged and concatenated.
    assert "ReduceMean" in ops and "Concat" in ops, ops
    _numerics(run)


@torchscript_only(TORCHSCRIPT_FAILURE)
def test_without_the_rewriter_torch_cannot_export_it(tmp_path):
    code = EXPORT.replace("DYNAMIC", 'dynamic_axes={"x": {0: "n"}}')
    run = run_script(tmp_path, code, backend="tensorrt",
                     TORCHRW_DISABLE="builtin:aten::adaptive_avg_pool2d@default")
    assert run.returncode != 0
    assert "adaptive" in run.stderr
