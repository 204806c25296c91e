"""The built-in symbolic of symbolic/slice_scatter.c: aten::slice_scatter
over a region with no element returns self (torch.export's exporter).

swin3d_t's shifted-window attention mask assigns mask[h0:h1, w0:w1] = count
over the regions (0, -window), (-window, -shift), (-shift, None) of each
dim; a dim no larger than its window takes the window's size and shift 0,
and then x[0:-7] and x[-7:-0] on a dim of 7 are empty.  torch.export
functionalizes each assignment into aten.slice_scatter, and its exporter
writes a ScatterND whose indices and updates fold into constants of zero
elements, which OpenVINO refuses (data/backends/openvino.json, ScatterND
min_elements).  The TorchScript exporter traces the same assignment as
index_put (symbolic/index_put.c) and has no slice_scatter symbolic of its
own, so there the rewriter does not apply."""
import subprocess

import numpy as np
import pytest

from conftest import BUILD, EXPORTER, constants, engines, ort_run, run_script


MASK = """
import numpy as np, torch

class M(torch.nn.Module):
    # swin's shifted-window mask (torchvision's _compute_attention_mask_3d,
    # in two dims): a dim no larger than the window gets shift 0.
    def forward(self, x):
        size = x.shape[-2:]
        window = (7, 7)
        shift = [0 if s <= w else 3 for s, w in zip(size, window)]
        mask = x.new_zeros(size)
        count = 0
        for h in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
            for w in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
                mask[h[0]:h[1], w[0]:w[1]] = count
                count += 1
        return x + mask

x = torch.randn(1, 2, SIZE, generator=torch.Generator().manual_seed(0))
np.savez("io.npz", x=x.numpy(), y=M()(x).numpy())
torch.onnx.export(M(), (x,), "model.onnx", opset_version=OPSET, input_names=["x"], **TS)
"""


def empty_scatter_inputs(model):
    """(node, input index) of every ScatterND input that is a constant of
    zero elements."""
    consts = constants(model)
    return [(n.name, i) for n in model.graph.node if n.op_type == "ScatterND"
            for i, name in enumerate(n.input) if name in consts and consts[name].size == 0]


def check_openvino(path):
    p = subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(path),
                        "--backend", "openvino"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def openvino_matches(run, tmp_path):
    if engines.missing("openvino"):
        return
    io = np.load(run.path("io.npz"))
    (got,) = engines.run("openvino", run.path("model.onnx"), {"x": io["x"]}, tmp_path / "ov")
    np.testing.assert_allclose(got, io["y"], rtol=1e-6)


@pytest.mark.parametrize("opset", [11, 17])  # 17: the newest torch 1.13 knows
def test_slice_scatter_over_an_empty_region_is_self(tmp_path, opset):
    # h: a dim of 7, window 7, shift 0: (0:-7) and (-7:0) are empty.
    # w: a dim of 10, shift 3: every region has elements.
    code = MASK.replace("SIZE", "7, 10").replace("OPSET", str(opset))
    run = run_script(tmp_path, code, backend="openvino", TORCHRW_LOG="info").check()
    if EXPORTER == "torch.export":
        assert "fired builtin:aten::slice_scatter@default" in run.stderr, run.stderr
        (tmp_path / "plain").mkdir()
        plain = run_script(tmp_path / "plain", code, preload=False).check()
        assert empty_scatter_inputs(plain.model()), "torch wrote no empty ScatterND input"
    else:
        # The tracer records index_put; torch has no slice_scatter symbolic
        # for the rewriter to hand other calls to, and it is not installed.
        assert "fired builtin:aten::index_put@default" in run.stderr, run.stderr
        assert "aten::slice_scatter" not in run.stderr, run.stderr
    assert empty_scatter_inputs(run.model()) == []
    check_openvino(run.path("model.onnx"))
    io = np.load(run.path("io.npz"))
    (got,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(got, io["y"], rtol=1e-6)
    openvino_matches(run, tmp_path)


def test_slice_scatter_over_regions_with_elements_is_the_exporter_s(tmp_path):
    # Dims of 10, shift 3: no region is empty; each slice_scatter goes to
    # the exporter's own translation (ScatterND), and torchrw says why.
    code = MASK.replace("SIZE", "10, 10").replace("OPSET", "17")
    run = run_script(tmp_path, code, backend="openvino", TORCHRW_LOG="info").check()
    if EXPORTER == "torch.export":
        assert ("builtin:aten::slice_scatter@default (symbolic/slice_scatter.c:" in run.stderr
                and "leaves aten::slice_scatter to the original symbolic: src has no dim "
                    "statically 0" in run.stderr), run.stderr
    assert "ScatterND" in run.ops()
    assert empty_scatter_inputs(run.model()) == []
    check_openvino(run.path("model.onnx"))
    io = np.load(run.path("io.npz"))
    (got,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(got, io["y"], rtol=1e-6)
    openvino_matches(run, tmp_path)


EXPLICIT = """
import torch
class M(torch.nn.Module):
    def forward(self, x):
        # (step given: torch 1.13 reads its default as garbage.)
        return torch.slice_scatter(x, torch.ones(2, 0), 1, 7, None, 1) + 1
try:
    torch.onnx.export(M(), (torch.randn(2, 7),), "model.onnx", opset_version=11, **TS)
    print("EXPORTED")
except Exception as e:
    print("ERROR", type(e).__name__, str(e).splitlines()[0])
"""


@pytest.mark.skipif(EXPORTER != "torchscript", reason="the TorchScript exporter's symbolics")
def test_an_explicit_slice_scatter_fares_as_without_torchrw_under_torchscript(tmp_path):
    # Neither torch 1.13's nor 2.x's TorchScript exporter has a symbolic
    # for aten::slice_scatter: the rewriter is not installed there, and the
    # export fails as torch's own does.
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", EXPLICIT, preload=False).check()
    run = run_script(tmp_path, EXPLICIT, backend="openvino", TORCHRW_LOG="info").check()
    said = [l for l in plain.stdout.splitlines() if l.startswith(("ERROR", "EXPORTED"))]
    assert said and "slice_scatter" in said[0], plain.stdout
    assert [l for l in run.stdout.splitlines() if l.startswith(("ERROR", "EXPORTED"))] == said
    assert "slice_scatter@default" not in run.stderr, run.stderr
