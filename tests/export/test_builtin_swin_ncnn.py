"""Built-in rewriters of rewriters/swin_ncnn.c: timm's Swin
WindowAttention.forward and PatchMerging.forward for ncnn, through tensors
of at most 4 dims with the batch alone in dim 0, where timm's own go
through 5 and 6 dims, which ncnn cannot load."""
import subprocess

import numpy as np
import onnx
import pytest

from conftest import EXPORTER, PYTHON, ncnn_matches, ort_run, run_script


ATTN = "timm.models.swin_transformer.WindowAttention.forward"
MERGE = "timm.models.swin_transformer.PatchMerging.forward"


def fired(name):
    return f"fired builtin:{name}@ncnn"


def leaves(name):
    return f"leaves {name} to the original"


def _has_timm():
    p = subprocess.run([PYTHON, "-c", "import timm"], capture_output=True, timeout=300)
    return p.returncode == 0


pytestmark = pytest.mark.skipif(not _has_timm(), reason=f"{PYTHON} has no timm")

# timm's own blocks: a Swin block without shift, one with shift (its
# attention gets the shift mask, 4 windows), the same with timm's fused
# attention path, and patch merging on even and odd sizes.  H != W, and a
# window of 2 x 4, so that a swapped axis shows.  A batch of one, as ncnn
# runs it.
EXPORT = """
import numpy as np, torch
from timm.models import swin_transformer as st
torch.manual_seed(0)

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        kw = dict(dim=16, input_resolution=(4, 8), num_heads=2, window_size=(2, 4))
        self.plain = st.SwinTransformerBlock(shift_size=0, **kw)
        self.shifted = st.SwinTransformerBlock(shift_size=(1, 2), **kw)
        self.fused = st.SwinTransformerBlock(shift_size=(1, 2), **kw)
        self.fused.attn.fused_attn = True
        self.merge = st.PatchMerging(16)
        self.merge_odd = st.PatchMerging(16, out_dim=24)
        for p in self.parameters():  # timm initialises the bias table near 0
            torch.nn.init.normal_(p, std=0.3)
    def forward(self, x, y):
        a = self.plain(x)
        b = self.shifted(a)
        c = self.fused(a)
        return b, c, self.merge(b), self.merge_odd(y)

m = M().eval()
assert m.shifted.attn_mask is not None and m.shifted.attn_mask.shape[0] == 4
x = torch.randn(1, 4, 8, 16)
y = torch.randn(1, 5, 7, 16)
with torch.no_grad():
    want = m(x, y)
kw = dict(TS, opset_version=13) if TS else {}
torch.onnx.export(m, (x, y), "model.onnx", input_names=["x", "y"], **kw)
np.savez("io.npz", x=x.numpy(), y=y.numpy(), **{f"out{i}": w.numpy() for i, w in enumerate(want)})
"""


def ranks(path):
    """Every value of the graph whose rank onnx's shape inference knows:
    name -> rank."""
    g = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    return {v.name: len(v.type.tensor_type.shape.dim)
            for v in list(g.value_info) + list(g.input) + list(g.output)
            if v.type.tensor_type.HasField("shape")}


def check_outputs(run, names, rtol=1e-4, atol=1e-5):
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {n: io[n] for n in names})
    for i, o in enumerate(outs):
        np.testing.assert_allclose(o, io[f"out{i}"], rtol=rtol, atol=atol, err_msg=f"out{i}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("swin")
    return run_script(d, EXPORT, backend="ncnn", TORCHRW_LOG="info").check()


def test_swin_blocks_have_at_most_4_dims_and_match(exported):
    run = exported
    for t in (ATTN, MERGE):
        assert fired(t) in run.stderr and leaves(t) not in run.stderr, (t, run.stderr)
    r = ranks(run.path("model.onnx"))
    assert r and max(r.values()) <= 4, {k: v for k, v in r.items() if v > 4}
    check_outputs(run, ["x", "y"])


def test_ncnn_runs_the_rewritten_blocks(exported, tmp_path):
    io = np.load(exported.path("io.npz"))
    want = [io[f"out{i}"] for i in range(4)]
    ncnn_matches(exported.path("model.onnx"), {"x": io["x"], "y": io["y"]}, tmp_path, want,
                 rtol=1e-3, atol=1e-3)


def test_other_backends_keep_timms_5_and_6_dim_tensors(tmp_path):
    # The premise: timm's own methods hold tensors of more than 4 dims.
    code = EXPORT
    if EXPORTER == "torch.export":
        # torch.export's exporter cannot decompose timm's own fused path
        # (scaled_dot_product_attention's: "Cannot view a tensor with shape
        # [4, 8, 2, 8] and strides (128, 8, 64, 1) as a tensor with shape
        # (4, 8, 16)"); the rewrite has no such view.  The premise is shown
        # by the unfused blocks.
        code = code.replace("self.fused.attn.fused_attn = True", "pass")
    run = run_script(tmp_path, code, backend="onnxruntime", TORCHRW_LOG="info").check()
    assert not any(fired(t) in run.stderr for t in (ATTN, MERGE))
    assert max(ranks(run.path("model.onnx")).values()) > 4


# A call that does not fit: a qkv that is no linear (a wrapper, as
# adapters put around it) goes to the original, which computes what timm
# does.
OTHERS = """
import numpy as np, torch
from timm.models import swin_transformer as st
torch.manual_seed(0)

class Wrapped(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
    def forward(self, x):
        return self.inner(x)

m = st.WindowAttention(16, num_heads=2, window_size=(2, 4)).eval()
m.qkv = Wrapped(m.qkv)
x = torch.randn(4, 8, 16)
with torch.no_grad():
    want = m(x)
kw = dict(TS, opset_version=13) if TS else {}
torch.onnx.export(m, (x,), "model.onnx", input_names=["x"], **kw)
np.savez("io.npz", x=x.numpy(), out0=want.numpy())
"""


def test_a_call_that_does_not_fit_goes_to_the_original_with_the_reason(tmp_path):
    run = run_script(tmp_path, OTHERS, backend="ncnn", TORCHRW_LOG="info").check()
    assert f"{leaves(ATTN)}: qkv is not a linear whose out_features" in run.stderr, run.stderr
    assert max(ranks(run.path("model.onnx")).values()) == 5
    check_outputs(run, ["x"])


# torch.export keeps a dimension declared dynamic symbolic (a SymInt): a
# dynamic batch of windows stays the reshapes' -1, a dynamic height of the
# merged image goes to the original.  The TorchScript tracer records the
# example's sizes instead.
DYNAMIC = """
import numpy as np, torch
from torch.export import Dim
from timm.models import swin_transformer as st
torch.manual_seed(0)

attn = st.WindowAttention(16, num_heads=2, window_size=(2, 4)).eval()
merge = st.PatchMerging(16).eval()
x = torch.randn(4, 8, 16)
y = torch.randn(2, 4, 6, 16)
torch.onnx.export(attn, (x,), "attn.onnx", input_names=["x"],
                  dynamic_shapes={"x": {0: Dim("b", min=1, max=64)}})
torch.onnx.export(merge, (y,), "merge.onnx", input_names=["x"],
                  dynamic_shapes={"x": {1: 2 * Dim("h", min=1, max=16)}})
with torch.no_grad():
    np.savez("io.npz", x=np.concatenate([x.numpy()] * 3), y=y.numpy(),
             attn=attn(torch.cat([x] * 3)).numpy(), merge=merge(y).numpy())
"""


@pytest.mark.skipif(EXPORTER != "torch.export", reason=(
    "dynamic_shapes: only torch.export keeps a dimension symbolic; the TorchScript "
    "tracer records the example's sizes"))
def test_torch_export_keeps_a_dynamic_batch_and_leaves_a_dynamic_height(tmp_path):
    run = run_script(tmp_path, DYNAMIC, backend="ncnn", TORCHRW_LOG="info").check()
    err = run.stderr
    assert fired(ATTN) in err and leaves(ATTN) not in err, err
    assert f"{leaves(MERGE)}: a size that is not a plain int (a dimension kept dynamic)" in err
    assert max(ranks(run.path("attn.onnx")).values()) <= 4
    assert max(ranks(run.path("merge.onnx")).values()) == 6
    io = np.load(run.path("io.npz"))
    (a,) = ort_run(run.path("attn.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(a, io["attn"], rtol=1e-4, atol=1e-5)
    (b,) = ort_run(run.path("merge.onnx"), {"x": io["y"]})
    np.testing.assert_allclose(b, io["merge"], rtol=1e-4, atol=1e-5)
