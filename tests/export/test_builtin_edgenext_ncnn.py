"""Built-in rewriter of rewriters/edgenext_ncnn.c: timm's EdgeNeXt
cross-covariance attention for ncnn, its packed projection split by three
slices into (B, H, hd, N) heads instead of a 5-dim reshape and an unbind,
which ncnn (4-dim blobs) refuses when pnnx does not fold them."""
import sys

import numpy as np
import onnx
import pytest

from conftest import check_ncnn, ncnn_matches, ort_run, run_script


FORWARD = "timm.models.edgenext.CrossCovarianceAttn.forward"
FIRED = f"fired builtin:{FORWARD}@ncnn"
LEAVES = f"leaves {FORWARD} to the original"

# Two attentions as EdgeNeXt's SplitTransposeBlock holds them (tokens of a
# 4x4 grid, 32 channels, 4 heads, a learned temperature per head made
# unequal so that a head swap would show), the second with its projection
# wrapped in a Sequential (as an adapter or a quantizer wraps a Linear),
# which the rewriter does not read and leaves to the original; and a whole
# edgenext_xx_small at 64x64, random weights.
EXPORT = """
import sys
import numpy as np, torch
try:
    import timm
    from timm.models.edgenext import CrossCovarianceAttn
except ImportError:
    print("NO_TIMM")
    sys.exit(0)
torch.manual_seed(0)

class Net(torch.nn.Module):
    def __init__(self, wrapped=False):
        super().__init__()
        self.inp = torch.nn.Linear(8, 32)
        self.xca = CrossCovarianceAttn(32, num_heads=4, qkv_bias=True)
        with torch.no_grad():
            self.xca.temperature.copy_(torch.linspace(0.5, 2.0, 4).view(4, 1, 1))
        if wrapped:
            self.xca.qkv = torch.nn.Sequential(self.xca.qkv)
        self.out = torch.nn.Linear(32, 8)
    def forward(self, x):
        return self.out(self.xca(self.inp(x)))

kw = dict(TS, opset_version=13) if TS else {}
nets = (("xca", Net().eval(), torch.randn(1, 16, 8)),
        ("wrapped", Net(wrapped=True).eval(), torch.randn(1, 16, 8)),
        ("model", timm.create_model("edgenext_xx_small", pretrained=False).eval(),
         torch.randn(1, 3, 64, 64)))
for name, m, x in nets:
    with torch.no_grad():
        want = m(x)
    torch.onnx.export(m, (x,), name + ".onnx", input_names=["x"], **kw)
    np.savez(name + ".npz", x=x.numpy(), y=want.numpy())
"""


def export(tmp_path, backend):
    run = run_script(tmp_path, EXPORT, backend=backend, TORCHRW_LOG="info").check()
    if "NO_TIMM" in run.stdout:
        pytest.skip("timm is not installed for this torch")
    return run


def graph(path):
    return onnx.load(str(path)).graph


def five_dim_reshapes(path):
    """Reshapes whose shape is a constant of 5 entries (what the original's
    packed split writes)."""
    g = graph(path)
    consts = {i.name: len(onnx.numpy_helper.to_array(i)) for i in g.initializer
              if len(i.dims) == 1}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].t.dims:
            consts[n.output[0]] = n.attribute[0].t.dims[0]
    return [n.name for n in g.node
            if n.op_type == "Reshape" and consts.get(n.input[1]) == 5]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export(tmp_path_factory.mktemp("edgenext"), "ncnn")


@pytest.mark.parametrize("name", ["xca", "model"])
def test_heads_are_slices_of_at_most_4_dims_and_match(exported, name):
    run = exported
    assert FIRED in run.stderr, run.stderr
    path = run.path(f"{name}.onnx")
    ops = {n.op_type for n in graph(path).node}
    assert "SplitToSequence" not in ops and not five_dim_reshapes(path), ops
    rc, said = check_ncnn(path)
    assert rc == 0, said
    io = np.load(run.path(f"{name}.npz"))
    (y,) = ort_run(path, {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5, err_msg=name)


def test_a_projection_it_cannot_read_goes_to_the_original(exported):
    run = exported
    assert f"{LEAVES}: qkv is not a linear of 3 x C outputs" in run.stderr, run.stderr
    path = run.path("wrapped.onnx")
    assert five_dim_reshapes(path), "the original's 5-dim reshape is gone"
    io = np.load(run.path("wrapped.npz"))
    (y,) = ort_run(path, {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["xca", "model"])
def test_ncnn_runs_the_rewritten_attention(exported, name, tmp_path):
    io = np.load(exported.path(f"{name}.npz"))
    scale = float(np.abs(io["y"]).max())
    ncnn_matches(exported.path(f"{name}.onnx"), {"x": io["x"]}, tmp_path, [io["y"]], rtol=1e-3,
                 atol=1e-3 * scale)


def test_without_torchrw_the_packed_split_is_5_dims(tmp_path):
    # The premise: torch's export of the original writes the 5-dim reshape
    # of the packed projection, which ncnn's 4-dim blobs cannot hold.
    run = export(tmp_path, "onnxruntime")
    assert FIRED not in run.stderr
    assert five_dim_reshapes(run.path("xca.onnx")), "no 5-dim reshape in the plain file"
