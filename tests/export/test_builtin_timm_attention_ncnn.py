"""Built-in rewriter of rewriters/timm_attention_ncnn.c: timm's
Attention.forward (ViT, DeiT, MobileViT) for ncnn, with three slices of the
qkv projection and heads as a dim of their own, no tensor of more than 4
dims and no unbind (timm splits its projection through a 5-dim tensor)."""
import subprocess

import numpy as np
import onnx
import pytest

from conftest import PYTHON, ncnn_matches, ort_run, run_script


FIRED = "fired builtin:timm.layers.attention.Attention.forward@ncnn"
LEAVES = "leaves timm.layers.attention.Attention.forward to the original"


def _has_timm():
    p = subprocess.run([PYTHON, "-c", "import timm.layers.attention"], capture_output=True,
                       text=True, timeout=300)
    return p.returncode == 0


pytestmark = pytest.mark.skipif(not _has_timm(), reason=f"{PYTHON} has no timm")

# A small ViT (timm's own, fused_attn as timm sets it: SDPA on torch 2.x)
# and one Attention on its written-out path (fused_attn off) with a scale
# of its own, as a model may set it; batch 1, as ncnn runs it.
EXPORT = """
import numpy as np, torch
import timm
from timm.layers.attention import Attention
torch.manual_seed(0)

class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.vit = timm.models.vision_transformer.VisionTransformer(
            img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=10)
        self.attn = Attention(32, num_heads=2, qkv_bias=True)
        self.attn.fused_attn = False
        self.attn.scale = 0.3
    def forward(self, img, x):
        return self.vit(img), self.attn(x)

m = Model().eval()
img, x = torch.randn(1, 3, 32, 32), torch.randn(1, 7, 32)
with torch.no_grad():
    want = m(img, x)
kw = dict(TS, opset_version=13) if TS else dict(opset_version=18)
torch.onnx.export(m, (img, x), "model.onnx", input_names=["img", "x"], **kw)
np.savez("io.npz", img=img.numpy(), x=x.numpy(), a=want[0].numpy(), b=want[1].numpy())
"""


def ranks(path):
    """Every value of the graph (after onnx's shape inference) whose rank
    is known: name -> rank."""
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    g = m.graph
    out = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            out[v.name] = len(t.shape.dim)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("timm")
    return run_script(d, EXPORT, backend="ncnn", TORCHRW_LOG="info").check()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    d = tmp_path_factory.mktemp("timm_plain")
    return run_script(d, EXPORT, preload=False)


def test_at_most_4_dims_and_matches_pytorch(exported):
    run = exported
    assert FIRED in run.stderr and LEAVES not in run.stderr, run.stderr
    r = ranks(run.path("model.onnx"))
    assert r and max(r.values()) <= 4, {k: v for k, v in r.items() if v > 4}
    ops = {n.op_type for n in onnx.load(str(run.path("model.onnx"))).graph.node}
    assert "SplitToSequence" not in ops and "SequenceAt" not in ops, ops
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"img": io["img"], "x": io["x"]})
    np.testing.assert_allclose(a, io["a"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b, io["b"], rtol=1e-4, atol=1e-5)


def test_plain_torch_goes_through_5_dims(plain):
    # The premise: without torchrw timm's attention holds a 5-dim tensor
    # (torch's TorchScript exporter below opset 14 has no SDPA at all).
    if plain.returncode != 0:
        assert "scaled_dot_product_attention" in plain.stderr, plain.stderr[-2000:]
        return
    assert max(ranks(plain.path("model.onnx")).values()) == 5


def test_ncnn_runs_it(exported, tmp_path):
    io = np.load(exported.path("io.npz"))
    ncnn_matches(exported.path("model.onnx"), {"img": io["img"], "x": io["x"]}, tmp_path,
                 [io["a"], io["b"]], rtol=1e-3, atol=1e-4)


OTHERS = """
import numpy as np, torch
from timm.layers.attention import Attention
torch.manual_seed(0)

class QkNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attention(16, num_heads=2, qk_norm=True, norm_layer=torch.nn.LayerNorm)
    def forward(self, x):
        return self.attn(x)

class Masked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attention(16, num_heads=2)
        self.mask = torch.triu(torch.full((5, 5), float("-inf")), 1)
    def forward(self, x):
        return self.attn(x, attn_mask=self.mask)

x = torch.randn(1, 5, 16)
kw = dict(TS, opset_version=14) if TS else {}
out = {}
for name, m in (("qknorm", QkNorm()), ("masked", Masked())):
    m.eval()
    with torch.no_grad():
        out[name] = m(x).numpy()
    torch.onnx.export(m, (x,), name + ".onnx", input_names=["x"], **kw)
np.savez("io.npz", x=x.numpy(), **out)
"""


def test_what_does_not_fit_goes_to_the_original_with_the_reason(tmp_path):
    run = run_script(tmp_path, OTHERS, backend="ncnn", TORCHRW_LOG="info").check()
    assert f"{LEAVES}: qk_norm (q_norm or k_norm is not nn.Identity)" in run.stderr, run.stderr
    assert f"{LEAVES}: an attn_mask is given" in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    for name in ("qknorm", "masked"):
        (got,) = ort_run(run.path(f"{name}.onnx"), {"x": io["x"]})
        np.testing.assert_allclose(got, io[name], rtol=1e-5, atol=1e-5, err_msg=name)
        # The original's 5-dim split is still there: it was not rewritten.
        assert max(ranks(run.path(f"{name}.onnx")).values()) == 5, name


def test_other_backends_keep_timms_attention(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="onnxruntime", TORCHRW_LOG="info").check()
    assert FIRED not in run.stderr
