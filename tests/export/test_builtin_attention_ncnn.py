"""Built-in rewriter of rewriters/attention_ncnn.c: nn.MultiheadAttention's
self-attention (F.multi_head_attention_forward) for ncnn, with three
projections and heads as a dim of their own, no tensor of more than 4 dims
(torch 2.x's packed in-projection goes through 5)."""

import numpy as np
import onnx
import pytest

from conftest import TORCH, check_ncnn, ncnn_matches, ort_run, run_script


FIRED = "fired builtin:torch.nn.functional.multi_head_attention_forward@ncnn"
LEAVES = "leaves torch.nn.functional.multi_head_attention_forward to the original"

# torchvision's vit_b_16 encoder block, small: a batch_first
# nn.MultiheadAttention called as vit calls it (need_weights=False), and
# the same function called directly with every argument positional, the
# bias of the in-projection left out.
EXPORT = """
import numpy as np, torch
import torch.nn.functional as F
torch.manual_seed(0)

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)
        self.w = torch.nn.Parameter(torch.randn(48, 16) * 0.3)
        self.out = torch.nn.Linear(16, 16)
    def forward(self, x):
        y, none = self.attn(x, x, x, need_weights=False)
        assert none is None
        t = x.transpose(0, 1)
        z, _ = F.multi_head_attention_forward(
            t, t, t, 16, 2, self.w, None, None, None, False, 0.0,
            self.out.weight, self.out.bias, True, None, False)
        return x + y, z.transpose(0, 1)

m = Block().eval()
x = torch.randn(1, 5, 16)
with torch.no_grad():
    want = m(x)
    traced = torch.jit.trace(m, (x,))   # the rewrite in eager: the traced ops
    got = traced(x)
for w, g in zip(want, got):
    assert torch.allclose(w, g, rtol=1e-5, atol=1e-6), (w - g).abs().max()
kw = dict(TS, opset_version=11) if TS else {}
torch.onnx.export(m, (x,), "model.onnx", input_names=["x"], **kw)
np.savez("io.npz", x=x.numpy(), a=want[0].numpy(), b=want[1].numpy())
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
    d = tmp_path_factory.mktemp("mha")
    return run_script(d, EXPORT, backend="ncnn", TORCHRW_LOG="info").check()


def test_ncnn_attention_has_at_most_4_dims_and_matches(exported):
    run = exported
    assert FIRED in run.stderr and LEAVES not in run.stderr, run.stderr
    r = ranks(run.path("model.onnx"))
    assert r and max(r.values()) <= 4, {k: v for k, v in r.items() if v > 4}
    rc, said = check_ncnn(run.path("model.onnx"))
    assert "Reshape" not in said and "dims" not in said, said
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(a, io["a"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b, io["b"], rtol=1e-5, atol=1e-5)


def test_ncnn_runs_the_rewritten_attention(exported, tmp_path):
    io = np.load(exported.path("model.onnx").parent / "io.npz")
    ncnn_matches(exported.path("model.onnx"), {"x": io["x"]}, tmp_path, [io["a"], io["b"]],
                 rtol=1e-4, atol=1e-4)


OTHERS = """
import numpy as np, torch
torch.manual_seed(0)

class Masked(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)
        self.mask = torch.triu(torch.full((5, 5), float("-inf")), 1)
    def forward(self, x):
        return self.attn(x, x, x, attn_mask=self.mask, need_weights=False)[0]

class Weights(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(16, 4)
    def forward(self, x):
        y, w = self.attn(x, x, x)   # need_weights defaults to True
        return y, w

class Unbound(torch.nn.Module):
    # A keyword the signature does not have: the original's TypeError (which
    # torchrw's glue hands on as a RewriterError caused by it, as it does
    # whatever a Python rewriter raises).
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(16, 4)
    def forward(self, x):
        a = self.attn
        try:
            torch.nn.functional.multi_head_attention_forward(
                x, x, x, 16, 4, a.in_proj_weight, a.in_proj_bias, None, None, False, 0.0,
                a.out_proj.weight, a.out_proj.bias, need_weights=False, no_such_argument=1)
        except Exception as e:
            cause = e.__cause__ or e
            assert isinstance(cause, TypeError) and "no_such_argument" in str(cause), repr(e)
        else:
            raise AssertionError("no TypeError")
        return x * 2

x = torch.randn(1, 5, 16)
kw = dict(TS, opset_version=14) if TS else {}
out = {}
for name, m in (("masked", Masked()), ("weights", Weights()), ("unbound", Unbound())):
    m.eval()
    with torch.no_grad():
        want = m(x)
    want = want if isinstance(want, tuple) else (want,)
    torch.onnx.export(m, (x,), name + ".onnx", input_names=["x"], **kw)
    out.update({f"{name}{i}": w.numpy() for i, w in enumerate(want)})
np.savez("io.npz", x=x.numpy(), **out)
"""


def test_other_calls_go_to_the_original_with_the_reason(tmp_path):
    run = run_script(tmp_path, OTHERS, backend="ncnn", TORCHRW_LOG="info").check()
    assert f"{LEAVES}: an attn_mask or key_padding_mask is given" in run.stderr, run.stderr
    assert f"{LEAVES}: need_weights (the attention weights are asked for)" in run.stderr
    assert f"{LEAVES}: arguments that do not bind to its signature" in run.stderr
    assert FIRED in run.stderr  # it ran, and declined
    io = np.load(run.path("io.npz"))
    for name, n in (("masked", 1), ("weights", 2), ("unbound", 1)):
        outs = ort_run(run.path(f"{name}.onnx"), {"x": io["x"]})
        assert len(outs) == n
        for i, o in enumerate(outs):
            np.testing.assert_allclose(o, io[f"{name}{i}"], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}{i}")


def test_other_backends_keep_torchs_attention(tmp_path):
    run = run_script(tmp_path, EXPORT, backend="onnxruntime", TORCHRW_LOG="info").check()
    assert FIRED not in run.stderr
    # Also the premise: torch 2.x's own self-attention holds a 5-dim tensor
    # (torch 1.13's in-projection chunks in 3 dims).
    if TORCH >= (2, 0):
        assert max(ranks(run.path("model.onnx")).values()) == 5
