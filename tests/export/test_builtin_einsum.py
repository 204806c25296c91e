"""Built-in rewriters for opset 11 that TensorRT and ncnn users pick:
einsum below opset 12 (rewriters/einsum.c), Tensor.zero_ (rewriters/
tensor.c) and unflatten below opset 13 (rewriters/shape.c)."""
import numpy as np
import pytest

from conftest import EXPORTER, TORCH, ort_run, run_script, torchscript_only

EQUATIONS = [
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),          # bmm
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),  # attention scores
    ("bhqk,bhkd->bhqd", [(2, 2, 3, 5), (2, 2, 5, 4)]),
    ("bchw,bkc->bkhw", [(2, 3, 4, 5), (2, 6, 3)]),      # two own labels: Mul + sum
    ("i,j->ij", [(3,), (4,)]),                          # outer product
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (1, 4, 5)]),     # ellipsis, broadcast
    ("bn,anm,bm->ba", [(2, 3), (5, 3, 4), (2, 4)]),     # bilinear, 3 operands
    ("ij,jk", [(3, 4), (4, 5)]),                        # implicit output
    ("nqhd,nkhd->nhqk", [(1, 3, 2, 4), (1, 6, 2, 4)]),
]

EINSUM = """
import json, numpy as np, torch
EQS = json.loads(%r)
class M(torch.nn.Module):
    def forward(self, *xs):
        outs, i = [], 0
        for eq, shapes in EQS:
            outs.append(torch.einsum(eq, *xs[i:i + len(shapes)]))
            i += len(shapes)
        return tuple(outs)
g = torch.Generator().manual_seed(0)
xs = [torch.randn(*s, generator=g) for _, shapes in EQS for s in shapes]
names = [f"x{i}" for i in range(len(xs))]
torch.onnx.export(M(), tuple(xs), "model.onnx", opset_version=OPSET, input_names=names,
                  output_names=[f"o{i}" for i in range(len(EQS))], **TS)
np.savez("io.npz", **{n: x.numpy() for n, x in zip(names, xs)},
         **{f"o{i}": o.numpy() for i, o in enumerate(M()(*xs))})
""" % (__import__("json").dumps(EQUATIONS),)


@pytest.mark.parametrize("backend", ["tensorrt", "ncnn"])
def test_einsum_below_opset_12_uses_standard_ops(tmp_path, backend):
    run = run_script(tmp_path, EINSUM.replace("OPSET", "11"), backend=backend,
                     TORCHRW_LOG="info").check()
    assert "Einsum" not in run.ops(), run.ops()
    assert "fired builtin:aten::einsum@default" in run.stderr
    io = np.load(run.path("io.npz"))
    feeds = {k: io[k] for k in io.files if k.startswith("x")}
    for i, out in enumerate(ort_run(run.path("model.onnx"), feeds)):
        np.testing.assert_allclose(out, io[f"o{i}"], rtol=1e-5, atol=1e-5,
                                   err_msg=EQUATIONS[i][0])


def test_einsum_fails_below_opset_12_without_torchrw(tmp_path):
    """What the rewriter is for: torch's exporter refuses it (TorchScript:
    no symbolic before 12; torch.export: onnx cannot convert Einsum down)."""
    run = run_script(tmp_path, EINSUM.replace("OPSET", "11"), preload=False)
    if EXPORTER == "torchscript":
        assert run.returncode != 0 and "einsum" in run.stderr.lower()
    else:
        # The exporter keeps opset 18 when it cannot convert down.
        assert run.returncode != 0 or "Einsum" in run.ops()


@torchscript_only("opset 12 as asked: torch.export's exporter builds at 18")
def test_einsum_from_opset_12_is_left_alone(tmp_path):
    run = run_script(tmp_path, EINSUM.replace("OPSET", "12"), backend="tensorrt").check()
    assert "Einsum" in run.ops()


DIAGONAL = """
import torch
class M(torch.nn.Module):
    def forward(self, x):
        return torch.einsum("ii->i", x)
torch.onnx.export(M(), (torch.randn(3, 3),), "model.onnx", opset_version=11, **TS)
"""


@torchscript_only("torch.export's exporter builds Einsum at 18 and cannot convert it down")
def test_einsum_not_covered_goes_to_the_original_with_a_reason(tmp_path):
    run = run_script(tmp_path, DIAGONAL, backend="tensorrt", TORCHRW_LOG="info")
    assert ("builtin:aten::einsum@default (rewriters/einsum.c:" in run.stderr
            and "leaves aten::einsum to the original: equation \"ii->i\": a label "
                "repeated within one operand" in run.stderr), run.stderr
    # torch's own refusal, as without torchrw.
    assert run.returncode != 0 and "einsum" in run.stderr.split("Traceback")[-1].lower()


ZERO = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        y = x * 2
        y[:, :1].zero_()            # in place on a view
        z = x.clone()
        z.zero_()
        return y + z, z
x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), y=M()(x)[0].numpy(), z=M()(x)[1].numpy())
"""


@pytest.mark.parametrize("backend", ["tensorrt", "ncnn"])
def test_zero_exports_at_opset_11(tmp_path, backend):
    run = run_script(tmp_path, ZERO, backend=backend).check()
    io = np.load(run.path("io.npz"))
    y, z = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-6)
    np.testing.assert_array_equal(z, io["z"])


@torchscript_only("torch.export's exporter translates the functional aten::zero itself")
def test_zero_fails_on_torch_1_13_without_torchrw(tmp_path):
    run = run_script(tmp_path, ZERO, preload=False)
    if TORCH < (2, 0):
        assert run.returncode != 0 and "aten::zero" in run.stderr
    else:
        run.check()



UNFLATTEN = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x, y):
        a = x.unflatten(-1, (2, -1))                 # the last dim, with -1
        b = torch.unflatten(x, 1, (2, 3))            # a middle dim: the one after it pinned
        c = y.unflatten(2, (2, 4))                   # no -1: the first dim is inferred
        return a.sum(-2), b.flatten(1, 2), c.sum(-1)
g = torch.Generator().manual_seed(0)
x, y = torch.randn(2, 6, 8, generator=g), torch.randn(2, 5, 8, generator=g)
m = M()
torch.onnx.export(m, (x, y), "model.onnx", opset_version=11, input_names=["x", "y"],
                  dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, **TS)
# Another batch size than the example's.
x3, y3 = torch.randn(3, 6, 8, generator=g), torch.randn(3, 5, 8, generator=g)
with torch.no_grad():
    outs = m(x3, y3)
np.savez("io.npz", x=x3.numpy(), y=y3.numpy(), **{f"o{i}": o.numpy() for i, o in enumerate(outs)})
"""

@torchscript_only("torch.export's exporter builds at 18, where torch has unflatten's own")
def test_unflatten_below_opset_13_is_a_reshape(tmp_path):
    # Without torchrw: torch 2.x has no symbolic below opset 13, torch 1.13 none at all.
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", UNFLATTEN, preload=False)
    assert plain.returncode != 0 and "unflatten" in plain.stderr
    run = run_script(tmp_path, UNFLATTEN, backend="tensorrt", TORCHRW_LOG="info").check()
    assert "fired builtin:aten::unflatten.int@default" in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"], "y": io["y"]})
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, io[f"o{i}"], rtol=1e-5, atol=1e-5)


# Sizes the model computes from traced sizes stay computed in the graph:
# run at other sizes than the example's, the file still unflattens right.
UNFLATTEN_COMPUTED = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        n = x.size(2)
        return x.unflatten(2, (2, n // 2)).sum(2) * x.size(2)
m = M()
torch.onnx.export(m, (torch.randn(2, 3, 8),), "model.onnx", opset_version=11, input_names=["x"],
                  dynamic_axes={"x": {0: "b", 2: "n"}}, **TS)
x = torch.randn(3, 3, 12, generator=torch.Generator().manual_seed(1))
np.savez("io.npz", x=x.numpy(), y=m(x).numpy())
"""

# nn.MultiheadAttention's in-projection unflattens into (3, E) with E
# computed from the query's traced size (torch 2.x), which made every
# transformer fail at opsets 11 and 12 (torchvision's vit_b_16).
ATTENTION = """
import numpy as np, torch
torch.manual_seed(0)
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]
m = M().eval()
torch.onnx.export(m, (torch.randn(2, 5, 16),), "model.onnx", opset_version=11, input_names=["x"],
                  dynamic_axes={"x": {0: "b", 1: "n"}}, **TS)
x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    np.savez("io.npz", x=x.numpy(), y=m(x).numpy())
"""


@torchscript_only("torch.export's exporter builds at 18, where torch has unflatten's own")
@pytest.mark.parametrize("code", [UNFLATTEN_COMPUTED, ATTENTION], ids=["computed", "attention"])
def test_unflatten_keeps_computed_sizes_computed(tmp_path, code):
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", code, preload=False)
    if code is ATTENTION and TORCH < (2, 0):
        plain.check()  # torch 1.13's attention neither unflattens nor calls SDPA
    else:
        assert plain.returncode != 0 and "unflatten" in plain.stderr.split("Traceback")[-1], plain.stderr
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_LOG="info").check()
    if code is UNFLATTEN_COMPUTED or TORCH >= (2, 0):
        assert "fired builtin:aten::unflatten.int@default" in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    (y,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5)


# F.scaled_dot_product_attention below opset 14 (rewriters/attention.c):
# every mask kind, an explicit scale, and sequence lengths other than the
# example's at run time.
SDPA = """
import numpy as np, torch
import torch.nn.functional as F
class M(torch.nn.Module):
    def forward(self, q, k, v, fmask, bmask):
        return (F.scaled_dot_product_attention(q, k, v),
                F.scaled_dot_product_attention(q, k, v, attn_mask=fmask),
                F.scaled_dot_product_attention(q, k, v, attn_mask=bmask),
                F.scaled_dot_product_attention(q, k, v, is_causal=True),
                F.scaled_dot_product_attention(q, k, v, scale=0.3))
def inputs(b, l, s, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(b, 2, l, 8, generator=g), torch.randn(b, 2, s, 8, generator=g), torch.randn(b, 2, s, 8, generator=g)
    bmask = torch.rand(l, s, generator=g) > 0.3
    bmask[:, 0] = True   # no row masked entirely
    return q, k, v, torch.randn(l, s, generator=g), bmask
names = ["q", "k", "v", "fmask", "bmask"]
axes = {"q": {0: "b", 2: "l"}, "k": {0: "b", 2: "s"}, "v": {0: "b", 2: "s"},
        "fmask": {0: "l", 1: "s"}, "bmask": {0: "l", 1: "s"}}
torch.onnx.export(M(), inputs(2, 5, 5, 0), "model.onnx", opset_version=11, input_names=names,
                  dynamic_axes=axes, **TS)
xs = inputs(3, 4, 6, 1)
np.savez("io.npz", **{n: x.numpy() for n, x in zip(names, xs)},
         **{f"o{i}": o.numpy() for i, o in enumerate(M()(*xs))})
"""


@torchscript_only("torch.export's exporter builds at 18, where torch has the operator's own")
def test_scaled_dot_product_attention_below_opset_14(tmp_path):
    if TORCH < (2, 1):
        pytest.skip("torch 1.13 has no aten::scaled_dot_product_attention")
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", SDPA, preload=False)
    assert plain.returncode != 0 and "scaled_dot_product_attention" in plain.stderr, plain.stderr
    run = run_script(tmp_path, SDPA, backend="tensorrt", TORCHRW_LOG="info").check()
    assert "fired builtin:aten::scaled_dot_product_attention@default x5" in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {n: io[n] for n in ["q", "k", "v", "fmask", "bmask"]})
    # Causal at L=4, S=6 keeps torch's top-left alignment.
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, io[f"o{i}"], rtol=1e-4, atol=1e-5, err_msg=f"output {i}")
