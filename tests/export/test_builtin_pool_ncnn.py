"""Built-in rewriter of rewriters/ncnn_python.c: a global average pool of
a channels-last tensor under torch.export, for ncnn, as the mean torch
computes without the in-place restride of its result, which torch.export's
file writes as a Reshape and a Gather of 4-D constant indices that pnnx
leaves without an ncnn layer (ConvNeXt's and EdgeNeXt's heads)."""

import numpy as np
import onnx
import pytest

from conftest import EXPORTER, TORCH, engines, ort_run, read_report, run_script


TARGET = "torch.nn.functional.adaptive_avg_pool2d"
FIRED = f"fired builtin:{TARGET}@ncnn"
LEAVES = f"leaves {TARGET} to the original"

# A ConvNeXt-style stage end: a conv, then a linear over the channels in
# NHWC, permuted back (the pool's input is in channels-last order), a global
# pool and a LayerNorm over the channels in NHWC; the same with the
# pool's input made contiguous (no restride, nothing to rewrite), and a
# pool to 2x2 (not global).
EXPORT = """
import numpy as np, torch
torch.manual_seed(0)

class Net(torch.nn.Module):
    def __init__(self, contiguous=False, size=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16, 16)
        self.pool = torch.nn.AdaptiveAvgPool2d(size)
        self.norm = torch.nn.LayerNorm(16)
        self.contiguous = contiguous
    def forward(self, x):
        y = self.fc(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        if self.contiguous:
            y = y.contiguous()
        return self.norm(self.pool(y).permute(0, 2, 3, 1)).flatten(1)

kw = dict(TS, opset_version=13) if TS else {}
for name, m in (("last", Net()), ("contiguous", Net(contiguous=True)), ("two", Net(size=2))):
    m = m.eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        want = m(x)
    torch.onnx.export(m, (x,), name + ".onnx", input_names=["x"], **kw)
    # One file (torch.export's keeps its weights beside it, which pnnx
    # cannot read).
    onnx_model = __import__("onnx").load(name + ".onnx")
    __import__("onnx").save(onnx_model, name + "-inline.onnx")
    np.savez(name + ".npz", x=x.numpy(), y=want.numpy())
"""

needs_torch_export = pytest.mark.skipif(
    EXPORTER != "torch.export" or TORCH < (2, 0),
    reason="the restride is torch.export's: the TorchScript tracer records the pool as one operator")


def ops(path):
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    return run_script(d, EXPORT, backend="ncnn", TORCHRW_LOG="info",
                      TORCHRW_REPORT=d / "report.jsonl").check()


def fired_per_export(run):
    """The built-in's count in each export's record, in export order."""
    return [sum(f["count"] for f in r["fired"] if f["name"] == f"builtin:{TARGET}@ncnn")
            for r in read_report(run.path("report.jsonl"))]


@needs_torch_export
def test_channels_last_global_pool_has_no_gather_and_ncnn_runs_it(exported, tmp_path):
    run = exported
    assert FIRED in run.stderr, run.stderr
    path = run.path("last.onnx")
    assert "Gather" not in ops(path) and "ReduceMean" in ops(path), ops(path)
    io = np.load(run.path("last.npz"))
    (y,) = ort_run(path, {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-5, atol=1e-5)
    if engines.missing("ncnn"):
        return
    got = engines.run("ncnn", run.path("last-inline.onnx"), {"x": io["x"]}, tmp_path)
    c = engines.compare(got, [io["y"]], rtol=1e-4, atol=1e-4, check_dtype=False)
    assert c.ok, str(c)


@needs_torch_export
def test_pools_without_a_restride_go_to_the_original(exported):
    run = exported
    assert f"{LEAVES}: the input is in contiguous order (torch writes no restride)" in run.stderr
    assert (f"{LEAVES}: not a global pool (an output of 1x1) of an (N, C, H, W) tensor"
            in run.stderr), run.stderr
    # A built-in that hands the call on unchanged is not counted as fired.
    assert fired_per_export(run) == [1, 0, 0], read_report(run.path("report.jsonl"))
    for name in ("contiguous", "two"):
        io = np.load(run.path(f"{name}.npz"))
        (y,) = ort_run(run.path(f"{name}.onnx"), {"x": io["x"]})
        np.testing.assert_allclose(y, io["y"], rtol=1e-5, atol=1e-5, err_msg=name)


@needs_torch_export
def test_without_torchrw_the_restride_is_a_gather_ncnn_refuses(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="onnxruntime").check()
    assert FIRED not in run.stderr
    assert "Gather" in ops(run.path("last.onnx")), ops(run.path("last.onnx"))
    if engines.missing("ncnn"):
        return
    io = np.load(run.path("last.npz"))
    with pytest.raises(engines.EngineError, match="Gather not exists or registered"):
        engines.run("ncnn", run.path("last-inline.onnx"), {"x": io["x"]}, tmp_path / "ncnn")


def test_under_the_torchscript_exporter_the_pool_stays_one_operator(exported):
    if EXPORTER == "torch.export":
        pytest.skip("torch.export's export is the other tests'")
    run = exported
    assert FIRED not in run.stderr and fired_per_export(run) == [0, 0, 0]
    assert (f"{LEAVES}: the TorchScript exporter records the pool as one operator "
            "(GlobalAveragePool)") in run.stderr, run.stderr
    assert "GlobalAveragePool" in ops(run.path("last.onnx"))
    io = np.load(run.path("last.npz"))
    (y,) = ort_run(run.path("last.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-5, atol=1e-5)
