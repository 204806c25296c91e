"""Built-in rewriters of rewriters/tensor.c: triu and tril below opset 14
(default) and masked_fill with infinities (onnxruntime); torch's own
linspace, which needs no rewriter in torch 1.13."""
import numpy as np

from conftest import DYNAMIC_SIZES, TORCHSCRIPT_FAILURE, ort_run, run_script, torchscript_only

TRIU = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x):
        return torch.triu(x), torch.triu(x, 1), x.triu(-1), torch.tril(x, 2), torch.tril(x)

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 4, 5, generator=g)
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=[f"o{i}" for i in range(5)],
                  dynamic_axes={"x": {1: "h", 2: "w"}}, **TS)
x2 = torch.randn(2, 6, 3, generator=g)
np.savez("io.npz", x=x.numpy(), x2=x2.numpy(),
         **{f"o{i}": o.numpy() for i, o in enumerate(M()(x))},
         **{f"p{i}": o.numpy() for i, o in enumerate(M()(x2))})
"""


@torchscript_only(DYNAMIC_SIZES)
def test_triu_and_tril_export_at_opset_11_with_dynamic_sizes(tmp_path):
    run = run_script(tmp_path, TRIU, backend="tensorrt").check()
    assert "Trilu" not in run.ops()
    io = np.load(run.path("io.npz"))
    for x, p in (("x", "o"), ("x2", "p")):
        outs = ort_run(run.path("model.onnx"), {"x": io[x]})
        for i, out in enumerate(outs):
            np.testing.assert_allclose(out, io[f"{p}{i}"], rtol=1e-6)


@torchscript_only(TORCHSCRIPT_FAILURE)
def test_triu_fails_at_opset_11_when_disabled(tmp_path):
    run = run_script(tmp_path, TRIU, backend="tensorrt",
                     TORCHRW_DISABLE="builtin:torch.triu@default,builtin:torch.tril@default")
    assert run.returncode != 0 and "triu" in run.stderr


MASKED = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x, m):
        y = x.masked_fill(m, float("-inf"))
        return y.softmax(-1), torch.masked_fill(x, m, float("inf")).min(-1)[0]

x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
m = torch.tensor([[0, 1, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
torch.onnx.export(M(), (x, m), "model.onnx", opset_version=11,
                  input_names=["x", "m"], output_names=["p", "low"], **TS)
p, low = M()(x, m)
np.savez("io.npz", x=x.numpy(), m=m.numpy(), p=p.numpy(), low=low.numpy())
"""


def test_onnxruntime_masked_fill_gives_no_nan(tmp_path):
    run = run_script(tmp_path, MASKED, backend="onnxruntime").check()
    io = np.load(run.path("io.npz"))
    p, low = ort_run(run.path("model.onnx"), {"x": io["x"], "m": io["m"]})
    assert not np.isnan(p).any() and not np.isnan(low).any()
    # PyTorch with -inf: NaN on the fully masked row, the same elsewhere.
    assert np.isnan(io["p"][1]).all()
    np.testing.assert_allclose(p[[0, 2]], io["p"][[0, 2]], rtol=1e-6)
    np.testing.assert_allclose(p[1], [0.25] * 4, rtol=1e-6)
    np.testing.assert_allclose(low[[0, 2]], io["low"][[0, 2]], rtol=1e-6)


def test_other_backends_keep_inf(tmp_path):
    run = run_script(tmp_path, MASKED, backend="tensorrt").check()
    io = np.load(run.path("io.npz"))
    p, _ = ort_run(run.path("model.onnx"), {"x": io["x"], "m": io["m"]})
    assert np.isnan(p[1]).all()


LINSPACE = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x):
        return (x[0] + torch.linspace(0, 10, 5), torch.linspace(x.min(), x.max(), 4),
                torch.linspace(0, 10, 4, dtype=torch.int64), x[0, :1] + torch.linspace(0, 1, 1))

x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=["a", "b", "c", "d"], **TS)
np.savez("io.npz", x=x.numpy(), **{k: o.numpy() for k, o in zip("abcd", M()(x))})
"""


def test_linspace_exports_at_opset_11_without_a_rewriter(tmp_path):
    # torch 1.13 exports linspace at opsets 9 to 11 (Range, or constants),
    # including traced bounds, integer dtypes and steps=1: no rewriter.
    run = run_script(tmp_path, LINSPACE, backend="onnxruntime").check()
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"]})
    for k, out in zip("abcd", outs):
        np.testing.assert_allclose(out, io[k], rtol=1e-5, atol=1e-6, err_msg=k)
