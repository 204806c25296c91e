"""Built-in rewriters of rewriters/levit_ncnn.c, timm's LeViT for ncnn:
its Downsample (x.view(B, H, W, C)[:, ::s, ::s]) as a pooling of kernel 1
and stride s, since pnnx converts no Slice of another step than 1 and ncnn
refuses the Tensor.slice it leaves; and its LinearNorm (a linear, then a
BatchNorm1d over the flattened tokens) as one linear that carries the
norm, since pnnx makes the flattened tokens ncnn's batch and a whole LeViT
at 64x64 then stops in ncnn's extractor."""

import numpy as np
import pytest

from conftest import check_ncnn, engines, ncnn_matches, ort_run, run_script


FIRED = "fired builtin:timm.models.levit.Downsample.forward@ncnn"
LEAVES = "leaves timm.models.levit.Downsample.forward to the original"
NORM = "timm.models.levit.LinearNorm.forward"
NORM_FIRED = f"fired builtin:{NORM}@ncnn"
NORM_LEAVES = f"leaves {NORM} to the original"

# Two Downsamples as LeViT's AttentionDownsample holds them (its q path:
# Subsample then a linear), on a 4x4 grid and on an odd 5x5 one (::2 keeps
# 3 of 5), and one with use_pool=True, which the rewriter leaves alone.
EXPORT = """
import sys
import numpy as np, torch
try:
    from timm.models.levit import Downsample
except ImportError:
    print("NO_TIMM")
    sys.exit(0)
torch.manual_seed(0)

class Net(torch.nn.Module):
    def __init__(self, res, pool=False):
        super().__init__()
        self.inp = torch.nn.Linear(8, 8)
        self.down = Downsample(2, res, use_pool=pool)
        self.out = torch.nn.Linear(8, 8)
    def forward(self, x):
        return self.out(self.down(self.inp(x)))

kw = dict(TS, opset_version=13) if TS else {}
for name, res, pool in (("even", 4, False), ("odd", 5, False), ("pool", 4, True)):
    m = Net(res, pool).eval()
    x = torch.randn(1, res * res, 8)
    with torch.no_grad():
        want = m(x)
    torch.onnx.export(m, (x,), name + ".onnx", input_names=["x"], **kw)
    np.savez(name + ".npz", x=x.numpy(), y=want.numpy())
"""


def export(tmp_path, backend, code=EXPORT, **env):
    run = run_script(tmp_path, code, backend=backend, TORCHRW_LOG="info", **env).check()
    if "NO_TIMM" in run.stdout:
        pytest.skip("timm is not installed for this torch")
    return run


def ops(path):
    import onnx
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export(tmp_path_factory.mktemp("levit"), "ncnn")


def test_ncnn_downsample_is_a_pooling_and_check_passes(exported):
    run = exported
    assert FIRED in run.stderr, run.stderr
    assert f"{LEAVES}: a Downsample with a pool (use_pool=True) is a pooling already" in run.stderr
    for name in ("even", "odd"):
        path = run.path(f"{name}.onnx")
        assert "Slice" not in ops(path) and "AveragePool" in ops(path), ops(path)
        rc, said = check_ncnn(path)
        assert rc == 0, said
        io = np.load(run.path(f"{name}.npz"))
        (y,) = ort_run(path, {"x": io["x"]})
        np.testing.assert_allclose(y, io["y"], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", ["even", "odd"])
def test_ncnn_runs_the_rewritten_downsample(exported, name, tmp_path):
    io = np.load(exported.path(f"{name}.npz"))
    ncnn_matches(exported.path(f"{name}.onnx"), {"x": io["x"]}, tmp_path, [io["y"]], rtol=1e-4,
                 atol=1e-4)


def test_without_torchrw_the_strided_slice_is_flagged_and_refused(tmp_path):
    # The premise: torch's export of x[:, ::2, ::2] is two Slices of step 2,
    # which check flags and ncnn refuses to load.
    run = export(tmp_path, "onnxruntime")
    assert FIRED not in run.stderr
    path = run.path("even.onnx")
    assert ops(path).count("Slice") == 2, ops(path)
    rc, said = check_ncnn(path)
    assert rc == 1 and "(steps) is 2, above the maximum 1" in said, said
    if engines.missing("ncnn"):
        return
    io = np.load(run.path("even.npz"))
    with pytest.raises(engines.EngineError, match="Tensor.slice not exists or registered"):
        engines.run("ncnn", path, {"x": io["x"]}, tmp_path / "ncnn")


# LinearNorms with BatchNorm statistics and affine terms made unequal (a
# fold that dropped one would show): the timm one, one whose linear has a
# bias, one whose linear is wrapped in a Sequential (as an adapter wraps a
# Linear), which the rewriter does not read; and a whole levit_128s at
# 64x64, random weights, whose last stage has a single token.
NORM_EXPORT = """
import sys
import numpy as np, torch
try:
    import timm
    from timm.models.levit import LinearNorm
except ImportError:
    print("NO_TIMM")
    sys.exit(0)
torch.manual_seed(0)

def norm(bias=False, wrapped=False):
    m = LinearNorm(8, 16)
    if bias:
        m.linear = torch.nn.Linear(8, 16)
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-1, 1)
    if wrapped:
        m.linear = torch.nn.Sequential(m.linear)
    return m.eval()

kw = dict(TS, opset_version=13) if TS else {}
nets = (("norm", norm(), torch.randn(2, 5, 8)),
        ("bias", norm(bias=True), torch.randn(2, 5, 8)),
        ("wrapped", norm(wrapped=True), torch.randn(2, 5, 8)),
        ("model", timm.create_model("levit_128s", pretrained=False, img_size=64).eval(),
         torch.randn(1, 3, 64, 64)))
for name, m, x in nets:
    with torch.no_grad():
        want = m(x)
    torch.onnx.export(m, (x,), name + ".onnx", input_names=["x"], **kw)
    np.savez(name + ".npz", x=x.numpy(), y=want.numpy())
"""


@pytest.fixture(scope="module")
def norms(tmp_path_factory):
    return export(tmp_path_factory.mktemp("levit_norm"), "ncnn", NORM_EXPORT)


@pytest.mark.parametrize("name", ["norm", "bias", "model"])
def test_linear_norm_is_one_linear_and_matches(norms, name):
    run = norms
    assert NORM_FIRED in run.stderr, run.stderr
    path = run.path(f"{name}.onnx")
    kinds = ops(path)
    if name == "model":
        # What is left are the heads' NormLinear: a BatchNorm1d of the
        # pooled (B, C), no tokens flattened (46 LinearNorms fold).
        assert kinds.count("BatchNormalization") <= 2, kinds
    else:
        assert sorted(kinds) == ["Add", "MatMul"], kinds
    rc, said = check_ncnn(path)
    assert rc == 0, said
    io = np.load(run.path(f"{name}.npz"))
    (y,) = ort_run(path, {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5, err_msg=name)


def test_a_linear_norm_it_cannot_read_goes_to_the_original(norms):
    run = norms
    assert f"{NORM_LEAVES}: self.linear is no torch.nn.Linear" in run.stderr, run.stderr
    path = run.path("wrapped.onnx")
    assert "BatchNormalization" in ops(path), ops(path)
    io = np.load(run.path("wrapped.npz"))
    (y,) = ort_run(path, {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["bias", "model"])
def test_ncnn_runs_the_folded_linear_norm(norms, name, tmp_path):
    io = np.load(norms.path(f"{name}.npz"))
    scale = float(np.abs(io["y"]).max())
    ncnn_matches(norms.path(f"{name}.onnx"), {"x": io["x"]}, tmp_path, [io["y"]], rtol=1e-3,
                 atol=1e-3 * scale)


def test_without_the_fold_ncnn_stops_in_levit_at_64x64(tmp_path):
    # The premise: with only the Downsample rewritten, pnnx takes the
    # flattened tokens for ncnn's batch, and the last stage's single token
    # meets the four of the stage before in the attention downsampling.
    reason = engines.missing("ncnn")
    if reason:
        pytest.skip(reason)
    run = export(tmp_path, "ncnn", NORM_EXPORT, TORCHRW_DISABLE=f"builtin:{NORM}@ncnn")
    assert NORM_FIRED not in run.stderr and FIRED in run.stderr, run.stderr
    io = np.load(run.path("model.npz"))
    with pytest.raises(engines.EngineError, match="ncnn run"):
        engines.run("ncnn", run.path("model.onnx"), {"x": io["x"]}, tmp_path / "ncnn")
