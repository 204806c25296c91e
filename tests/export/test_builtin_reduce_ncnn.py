"""Built-in rewriters of rewriters/reduce_ncnn.c: one-axis reductions for
ncnn where ONNX takes the axes as an input (ReduceSum from opset 13,
ReduceMean and ReduceL2 from 18), which pnnx converts only for two or
more axes.  Judged by ncnn itself, and by `torchrw check`, which must
agree with it on both files."""

import numpy as np
import pytest

from conftest import EXPORTER, TORCH, check_ncnn, engines, ort_run, run_script


# torch 1.13's TorchScript exporter stops at opset 17: there only ReduceSum
# takes its axes as an input.
OPSET = 18 if TORCH >= (2, 0) else 13
LEAVES = "leaves aten::sum.dim_IntList to the original: more than 3 dims"

EXPORT = """
import numpy as np, torch
import torch.nn.functional as F

class M(torch.nn.Module):
    def forward(self, x):
        outs = [x.sum(dim=2), x.sum(-1, keepdim=True),
                x.mean().reshape(1, 1), x.mean(dim=(1, 2))]   # every axis, two axes: as they are
        if OPSET >= 18:
            outs += [x.mean(dim=1), x.mean(-1, keepdim=True), F.normalize(x, dim=-1)]
        return tuple(outs)

g = torch.Generator().manual_seed(0)
x = torch.randn(1, 6, 5, generator=g)
kw = dict(TS, opset_version=OPSET)
if TORCH_EXPORT:   # pnnx reads no external data
    kw["external_data"] = False
torch.onnx.export(M(), (x,), "model.onnx", input_names=["x"], **kw)
np.savez("io.npz", x=x.numpy(), **{f"o{i}": o.numpy() for i, o in enumerate(M()(x))})

class Four(torch.nn.Module):   # 4 dims: ncnn holds no 5-dim copy; the original
    def forward(self, v):
        return v.sum(dim=1)

v = torch.randn(1, 2, 3, 4, generator=g)
torch.onnx.export(Four(), (v,), "four.onnx", input_names=["v"], **kw)
np.savez("four.npz", v=v.numpy(), o=Four()(v).numpy())
""".replace("OPSET", str(OPSET)).replace("TORCH_EXPORT", str(EXPORTER == "torch.export"))


def _want(run):
    io = np.load(run.path("io.npz"))
    return io, [io[f"o{i}"] for i in range(len([k for k in io.files if k.startswith("o")]))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("reduce")
    (d / "plain").mkdir()
    (d / "torchrw").mkdir()
    return (run_script(d / "plain", EXPORT, preload=False).check(),
            run_script(d / "torchrw", EXPORT, backend="ncnn", TORCHRW_LOG="info").check())


def test_one_axis_becomes_two_and_matches_pytorch(runs):
    _, run = runs
    assert "fired builtin:aten::sum.dim_IntList@ncnn" in run.stderr, run.stderr
    if OPSET >= 18:
        assert "fired builtin:aten::mean.dim@ncnn" in run.stderr
        assert "fired builtin:aten::linalg_vector_norm@ncnn" in run.stderr
    assert LEAVES in run.stderr, run.stderr
    io, want = _want(run)
    got = ort_run(run.path("model.onnx"), {"x": io["x"]})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    four = np.load(run.path("four.npz"))
    np.testing.assert_allclose(ort_run(run.path("four.onnx"), {"v": four["v"]})[0], four["o"],
                               rtol=1e-5, atol=1e-6)


def test_check_agrees_with_ncnn(runs, tmp_path):
    """The plain file: check flags its one-axis reductions and ncnn gets
    them wrong.  torchrw's file: check passes it and ncnn runs it as
    PyTorch does."""
    reason = engines.missing("ncnn")
    if reason:
        pytest.skip(reason)
    plain, run = runs
    rc, said = check_ncnn(plain.path("model.onnx"))
    assert rc == 1 and "fewer than 2" in said, said
    assert "fixed by: builtin:aten::sum.dim_IntList@ncnn" in said
    io, want = _want(plain)
    feeds = {"x": io["x"]}
    try:
        got = engines.run("ncnn", plain.path("model.onnx"), feeds, tmp_path / "plain")
        assert not engines.compare(got, want, rtol=1e-4, atol=1e-4, check_dtype=False).ok
    except engines.EngineError:
        pass
    rc, said = check_ncnn(run.path("model.onnx"))
    assert rc == 0, said
    got = engines.run("ncnn", run.path("model.onnx"), feeds, tmp_path / "torchrw")
    c = engines.compare(got, want, rtol=1e-4, atol=1e-5, check_dtype=False)
    assert c.ok, str(c)
