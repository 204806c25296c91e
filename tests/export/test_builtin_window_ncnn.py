"""Built-in rewriters of rewriters/window_ncnn.c: timm's window and grid
partitions (swin_transformer.window_partition/window_reverse,
maxxvit.window_partition/window_reverse/grid_partition/grid_reverse) for
ncnn, through reshapes of at most 4 dims with the batch alone in dim 0,
where timm's own go through 6 dims, which ncnn cannot load."""
import subprocess

import numpy as np
import onnx
import pytest

from conftest import EXPORTER, PYTHON, ncnn_matches, ort_run, run_script


TARGETS = ("timm.models.swin_transformer.window_partition",
           "timm.models.swin_transformer.window_reverse",
           "timm.models.maxxvit.window_partition",
           "timm.models.maxxvit.window_reverse",
           "timm.models.maxxvit.grid_partition",
           "timm.models.maxxvit.grid_reverse")


def fired(name):
    return f"fired builtin:{name}@ncnn"


def leaves(name):
    return f"leaves {name} to the original"


def _has_timm():
    p = subprocess.run([PYTHON, "-c", "import timm"], capture_output=True, timeout=300)
    return p.returncode == 0


pytestmark = pytest.mark.skipif(not _has_timm(), reason=f"{PYTHON} has no timm")

# A block that calls the six functions as swin and maxvit do, through their
# modules' globals, on (B, H, W, C) tensors: H != W and a != b, so that a
# swapped axis shows.  Between partition and reverse a per-window mixing,
# so that a window with the wrong pixels shows too.
EXPORT = """
import numpy as np, torch
from timm.models import swin_transformer as st, maxxvit as mx
torch.manual_seed(0)

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Linear(8, 8)
    def windows(self, w, a, b):
        t = w.reshape(-1, a * b, 8)
        t = self.mix(t).softmax(1) * t
        return t.reshape(-1, a, b, 8)
    def forward(self, x):
        H, W = x.shape[1], x.shape[2]
        s = st.window_reverse(self.windows(st.window_partition(x, (2, 4)), 2, 4), (2, 4), H, W)
        img = x.shape[1:3]
        m = mx.window_reverse(self.windows(mx.window_partition(x, (4, 3)), 4, 3), (4, 3), img)
        g = mx.grid_reverse(self.windows(mx.grid_partition(x, (2, 3)), 2, 3), (2, 3), img)
        return s, m, g

m = Block().eval()
x = torch.randn(1, 8, 12, 8)
with torch.no_grad():
    want = m(x)
kw = dict(TS, opset_version=13) if TS else {}
torch.onnx.export(m, (x,), "model.onnx", input_names=["x"], **kw)
np.savez("io.npz", x=x.numpy(), **{f"out{i}": w.numpy() for i, w in enumerate(want)})
"""


def ranks(path):
    """Every value of the graph whose rank onnx's shape inference knows:
    name -> rank."""
    g = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    return {v.name: len(v.type.tensor_type.shape.dim)
            for v in list(g.value_info) + list(g.input) + list(g.output)
            if v.type.tensor_type.HasField("shape")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("windows")
    return run_script(d, EXPORT, backend="ncnn", TORCHRW_LOG="info").check()


def test_windows_have_at_most_4_dims_and_match(exported):
    run = exported
    for t in TARGETS:
        assert fired(t) in run.stderr and leaves(t) not in run.stderr, (t, run.stderr)
    r = ranks(run.path("model.onnx"))
    assert r and max(r.values()) <= 4, {k: v for k, v in r.items() if v > 4}
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"]})
    for i, o in enumerate(outs):
        np.testing.assert_allclose(o, io[f"out{i}"], rtol=1e-5, atol=1e-6, err_msg=f"out{i}")


def test_ncnn_runs_the_rewritten_windows(exported, tmp_path):
    io = np.load(exported.path("io.npz"))
    ncnn_matches(exported.path("model.onnx"), {"x": io["x"]}, tmp_path,
                 [io["out0"], io["out1"], io["out2"]], rtol=1e-4, atol=1e-4)


def test_other_backends_keep_timms_6_dim_windows(tmp_path):
    # The premise: timm's own partitions hold 6-dim tensors.
    run = run_script(tmp_path, EXPORT, backend="onnxruntime", TORCHRW_LOG="info").check()
    assert not any(fired(t) in run.stderr for t in TARGETS)
    assert max(ranks(run.path("model.onnx")).values()) == 6


OTHERS = """
import numpy as np, torch
from timm.models import swin_transformer as st, maxxvit as mx
torch.manual_seed(0)

class Others(torch.nn.Module):
    def forward(self, x, y):
        # A window that does not divide the image: maxxvit's own _assert
        # raises, as it would without torchrw.
        try:
            mx.window_partition(x, (3, 5))
        except Exception as e:
            cause = e.__cause__ or e
            assert "must be divisible" in str(cause), repr(e)
        else:
            raise AssertionError("no error")
        # Not a 4-dim tensor: swin's own unpacks 4 sizes and raises.
        try:
            st.window_partition(x.unsqueeze(0), (2, 2))
        except Exception as e:
            assert isinstance(e.__cause__ or e, ValueError), repr(e)
        else:
            raise AssertionError("no error")
        # Windows that are not (N, a, b, C): the original reads them as it can.
        r = st.window_reverse(y, (2, 4), 4, 8)
        # A window size that is not a pair (swin's own reads its first two).
        w = st.window_partition(x, (2, 4, 1))
        return r, w

x = torch.randn(1, 8, 12, 8)
y = torch.randn(4, 4, 2, 8)
m = Others().eval()
with torch.no_grad():
    want = m(x, y)
kw = dict(TS, opset_version=13) if TS else {}
torch.onnx.export(m, (x, y), "model.onnx", input_names=["x", "y"], **kw)
np.savez("io.npz", x=x.numpy(), y=y.numpy(), **{f"out{i}": w.numpy() for i, w in enumerate(want)})
"""


def test_calls_that_do_not_fit_go_to_the_original_with_the_reason(tmp_path):
    run = run_script(tmp_path, OTHERS, backend="ncnn", TORCHRW_LOG="info").check()
    err = run.stderr
    mwp, swp, swr = TARGETS[2], TARGETS[0], TARGETS[1]
    assert f"{leaves(mwp)}: the window (or grid) size does not divide the image's" in err, err
    assert f"{leaves(swp)}: not a tensor of 4 dims (B, H, W, C)" in err
    assert f"{leaves(swr)}: the windows are not (N, a, b, C)" in err
    assert f"{leaves(swp)}: the window (or grid) size is not two positive ints" in err
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"], "y": io["y"]})
    for i, o in enumerate(outs):
        np.testing.assert_allclose(o, io[f"out{i}"], rtol=1e-6, atol=1e-6, err_msg=f"out{i}")


# torch.export keeps a dimension declared dynamic symbolic (a SymInt): a
# dynamic batch stays the reshapes' -1, a dynamic height goes to the
# original.  The TorchScript tracer records the example's sizes instead.
DYNAMIC = """
import numpy as np, torch
from torch.export import Dim
from timm.models import swin_transformer as st
torch.manual_seed(0)

class M(torch.nn.Module):
    def forward(self, x):
        w = st.window_partition(x, (2, 4)) * 2
        return st.window_reverse(w, (2, 4), x.shape[1], x.shape[2])

m = M().eval()
x = torch.randn(2, 8, 12, 8)
torch.onnx.export(m, (x,), "batch.onnx", input_names=["x"],
                  dynamic_shapes={"x": {0: Dim("b", min=1, max=8)}})
torch.onnx.export(m, (x,), "height.onnx", input_names=["x"],
                  dynamic_shapes={"x": {1: 2 * Dim("h", min=1, max=16)}})
"""


@pytest.mark.skipif(EXPORTER != "torch.export", reason=(
    "dynamic_shapes: only torch.export keeps a dimension symbolic; the TorchScript "
    "tracer records the example's sizes"))
def test_torch_export_keeps_a_dynamic_batch_and_leaves_a_dynamic_height(tmp_path):
    run = run_script(tmp_path, DYNAMIC, backend="ncnn", TORCHRW_LOG="info").check()
    err = run.stderr
    swp, swr = TARGETS[0], TARGETS[1]
    assert f"{leaves(swp)}: a size that is not a plain int (a dimension kept dynamic)" in err, err
    assert f"{leaves(swr)}: the image size is not two plain ints" in err
    assert max(ranks(run.path("batch.onnx")).values()) <= 4
    assert max(ranks(run.path("height.onnx")).values()) == 6
    for name, shape in (("batch.onnx", (3, 8, 12, 8)), ("height.onnx", (2, 6, 12, 8))):
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        (y,) = ort_run(run.path(name), {"x": x})
        np.testing.assert_allclose(y, x * 2, rtol=1e-6, err_msg=name)
