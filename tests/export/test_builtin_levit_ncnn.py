"""Built-in rewriter of rewriters/levit_ncnn.c: timm's LeViT Downsample
(x.view(B, H, W, C)[:, ::s, ::s]) for ncnn as a pooling of kernel 1 and
stride s, since pnnx converts no Slice of another step than 1 and ncnn
refuses the Tensor.slice it leaves."""

import numpy as np
import pytest

from conftest import ROOT, check_ncnn, ort_run, run_script

import sys
sys.path.insert(0, str(ROOT / "data"))
import engines  # noqa: E402

FIRED = "fired builtin:timm.models.levit.Downsample.forward@ncnn"
LEAVES = "leaves timm.models.levit.Downsample.forward to the original"

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


def export(tmp_path, backend):
    run = run_script(tmp_path, EXPORT, backend=backend, TORCHRW_LOG="info").check()
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
    reason = engines.missing("ncnn")
    if reason:
        pytest.skip(reason)
    io = np.load(exported.path(f"{name}.npz"))
    got = engines.run("ncnn", exported.path(f"{name}.onnx"), {"x": io["x"]}, tmp_path)
    c = engines.compare(got, [io["y"]], rtol=1e-4, atol=1e-4, check_dtype=False)
    assert c.ok, str(c)


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
