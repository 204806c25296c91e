"""Built-in symbolic of symbolic/embedding_ncnn.c: under torch.export's
exporter, aten::embedding for ncnn as a Gather without an axis attribute,
which pnnx turns into ncnn's Embed (with axis=0 written out, as
torch.export's translation writes it, pnnx leaves the Gather unconverted).
Judged by ncnn and by `torchrw check`, which names the fixer."""

import numpy as np
import onnx
import pytest

from conftest import EXPORTER, TORCH, check_ncnn, engines, run_script


FIRED = "fired builtin:aten::embedding@ncnn"

EXPORT = """
import numpy as np, torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 4)).eval()
ids = torch.randint(0, 50, (1, 6))
kw = dict(TS, opset_version=OPSET)
if TORCH_EXPORT:
    kw["external_data"] = False
torch.onnx.export(m, (ids,), "model.onnx", input_names=["ids"], **kw)
np.savez("io.npz", ids=ids.numpy(), out=m(ids).detach().numpy())
""".replace("OPSET", "18" if TORCH >= (2, 0) else "13").replace(
    "TORCH_EXPORT", str(EXPORTER == "torch.export"))


def gathers(run):
    return [n for n in onnx.load(str(run.path("model.onnx"))).graph.node if n.op_type == "Gather"]


def ncnn_result(run, workdir):
    io = np.load(run.path("io.npz"))
    try:
        got = engines.run("ncnn", run.path("model.onnx"), {"ids": io["ids"]}, workdir)
    except engines.EngineError as e:
        return e
    return engines.compare(got, [io["out"]], rtol=1e-4, atol=1e-5, check_dtype=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("embedding")
    (d / "plain").mkdir()
    (d / "torchrw").mkdir()
    return (run_script(d / "plain", EXPORT, preload=False).check(),
            run_script(d / "torchrw", EXPORT, backend="ncnn", TORCHRW_LOG="info").check())


def test_the_gather_sets_no_axis(runs):
    plain, run = runs
    assert [g.attribute for g in gathers(run)] == [[]]
    if EXPORTER == "torch.export":
        assert FIRED in run.stderr
        assert [a.name for a in gathers(plain)[0].attribute] == ["axis"]
    else:  # the TorchScript exporter's own symbolic writes none: nothing to do
        assert FIRED not in run.stderr
        assert [g.attribute for g in gathers(plain)] == [[]]


@pytest.mark.skipif(EXPORTER != "torch.export", reason="the TorchScript exporter's Gather already "
                    "sets no axis (test_the_gather_sets_no_axis)")
def test_check_and_ncnn_agree(runs, tmp_path):
    reason = engines.missing("ncnn")
    if reason:
        pytest.skip(reason)
    plain, run = runs
    rc, said = check_ncnn(plain.path("model.onnx"))
    assert rc == 1 and "Gather: input 1 'ids'" in said, said
    assert "fixed by: builtin:aten::embedding@ncnn (symbolic/embedding_ncnn.c:" in said, said
    res = ncnn_result(plain, tmp_path / "plain")
    assert isinstance(res, engines.EngineError) and "Gather" in res.message, res
    rc, said = check_ncnn(run.path("model.onnx"))
    assert rc == 0, said
    res = ncnn_result(run, tmp_path / "torchrw")
    assert not isinstance(res, engines.EngineError) and res.ok, str(res)
