"""Built-in rewriters of rewriters/mask_ncnn.c: transformers'
create_bidirectional_mask and create_causal_mask for ncnn, the additive
float mask by a lookup (Gather of a constant table: ncnn's Embed) of the
tokenizer's int mask, with no Cast, bool, And, Equal, Not or Where, which
ncnn has no layer for."""

import numpy as np
import onnx
import pytest

from conftest import ncnn_matches, ort_run, run_script, skip_without


BIDIRECTIONAL = "builtin:transformers.masking_utils.create_bidirectional_mask@ncnn"
CAUSAL = "builtin:transformers.masking_utils.create_causal_mask@ncnn"
# What ncnn has no layer for (pnnx leaves them: "layer torch.where not
# exists"); Cast is looked at apart (mask_ops).
NO_NCNN_LAYER = {"Where", "Not", "And", "Or", "Equal", "Less", "Greater", "Expand"}


@pytest.fixture(scope="module")
def has_transformers():
    skip_without("transformers")


# A 2-layer BERT (bidirectional mask) and GPT-2 (causal mask), random
# weights, fed as a tokenizer feeds them: int64 ids and a mask whose last 4
# positions are padding.  The premise is checked too: the mask changes the
# outputs, so a file that ignored it would not match.
EXPORT = """
import os
os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np, torch, transformers
torch.manual_seed(0)

class Out(torch.nn.Module):
    def __init__(self, m, field):
        super().__init__()
        self.m, self.field = m, field
    def forward(self, ids, mask):
        return getattr(self.m(input_ids=ids, attention_mask=mask), self.field)

bert = transformers.BertModel(transformers.BertConfig(
    vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, max_position_embeddings=32))
gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
    vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32, use_cache=False,
    bos_token_id=0, eos_token_id=0))
ids = torch.randint(1, 100, (1, 10))
mask = torch.ones(1, 10, dtype=torch.int64)
mask[:, -4:] = 0
io = {"ids": ids.numpy(), "mask": mask.numpy()}
for name, m in (("bert", Out(bert, "last_hidden_state")), ("gpt2", Out(gpt2, "logits"))):
    m.eval()
    with torch.no_grad():
        want = m(ids, mask)
        unmasked = m(ids, torch.ones_like(mask))
    assert (want - unmasked).abs().max() > 1e-3, name   # the mask matters
    kw = dict(TS, opset_version=13) if TS else {}
    torch.onnx.export(m, (ids, mask), name + ".onnx", input_names=["ids", "mask"], **kw)
    io[name] = want.numpy()
np.savez("io.npz", **io)
"""


@pytest.fixture(scope="module")
def exported(has_transformers, tmp_path_factory):
    d = tmp_path_factory.mktemp("mask")
    return run_script(d, EXPORT, backend="ncnn", TORCHRW_LOG="info").check()


def op_types(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def mask_ops(path):
    """What reads the graph input "mask", through Reshapes (GPT-2 views it
    as (batch, -1)): op type, and whether its other inputs are constants;
    and the targets of every Cast: ncnn keeps a Cast of a graph input's
    data (pnnx folds GPT-2's float-to-float one of its position
    embeddings, a constant)."""
    g = onnx.load(str(path)).graph
    const = {t.name for t in g.initializer}
    const |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    names, readers = {"mask"}, []
    for n in g.node:  # in topological order
        if not names & set(n.input):
            continue
        if n.op_type == "Reshape" and n.input[0] in names and n.input[1] in const:
            names.add(n.output[0])
        else:
            readers.append((n.op_type, all(i in const for i in n.input if i not in names)))
    casts = {a.i for n in g.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"}
    return readers, casts


@pytest.mark.parametrize("name, fired", [("bert", BIDIRECTIONAL), ("gpt2", CAUSAL)])
def test_mask_has_no_bool_and_matches(exported, name, fired):
    run = exported
    assert f"fired {fired}" in run.stderr, run.stderr
    assert "leaves transformers.masking_utils" not in run.stderr, run.stderr
    ops = op_types(run.path(f"{name}.onnx"))
    assert not ops & NO_NCNN_LAYER, ops & NO_NCNN_LAYER
    readers, casts = mask_ops(run.path(f"{name}.onnx"))
    assert readers == [("Gather", True)], readers      # a lookup in a constant table: Embed
    assert casts <= {onnx.TensorProto.FLOAT}, casts     # no bool, no cast of the mask
    io = np.load(run.path("io.npz"))
    got, = ort_run(run.path(f"{name}.onnx"), {"ids": io["ids"], "mask": io["mask"]})
    np.testing.assert_allclose(got, io[name], rtol=1e-4, atol=1e-5)


# pnnx (20261020) makes an Embed only of a Gather without an axis
# attribute; under torch.export symbolic/embedding_ncnn.c writes it so.
@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_ncnn_runs_the_masked_model(exported, name, tmp_path):
    io = np.load(exported.path("io.npz"))
    ncnn_matches(exported.path(f"{name}.onnx"), {"ids": io["ids"], "mask": io["mask"]}, tmp_path,
                 [io[name]], rtol=1e-4, atol=1e-4)


# Calls the rewrite does not cover, made from a model's forward: each goes
# to the original (whose bool mask ORT runs as transformers means it).
OTHERS = """
import os
os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np, torch, transformers
from transformers import masking_utils as mu
torch.manual_seed(0)
config = transformers.BertModel(transformers.BertConfig(
    vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=64)).config

class Calls(torch.nn.Module):
    def forward(self, x, mask):
        a = mu.create_bidirectional_mask(config, x, mask.bool())          # a bool mask
        b = mu.create_causal_mask(config, x[:, :3], mask, None)            # 3 queries, 6 keys
        c = mu.create_bidirectional_mask(config=config, inputs_embeds=x, attention_mask=None)
        assert c is None or c.dtype == torch.bool
        return a.float(), b.float()

x = torch.randn(1, 6, 32)
mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
with torch.no_grad():
    want = Calls()(x, mask)
kw = dict(TS, opset_version=13) if TS else {}
torch.onnx.export(Calls(), (x, mask), "others.onnx", input_names=["x", "mask"], **kw)
np.savez("io.npz", x=x.numpy(), mask=mask.numpy(), a=want[0].numpy(), b=want[1].numpy())
"""


def test_other_calls_go_to_the_original_with_the_reason(has_transformers, tmp_path):
    run = run_script(tmp_path, OTHERS, backend="ncnn", TORCHRW_LOG="info").check()
    leaves = "leaves transformers.masking_utils.create_{} to the original: {}"
    for kind, why in (("bidirectional_mask", "attention_mask is not a 2-D int64 or int32 tensor"),
                      ("causal_mask", "not as many queries as keys"),
                      ("bidirectional_mask", "no attention_mask")):
        assert leaves.format(kind, why) in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    inputs = [i.name for i in onnx.load(str(run.path("others.onnx"))).graph.input]
    a, b = ort_run(run.path("others.onnx"), {k: io[k] for k in inputs})
    np.testing.assert_array_equal(a, io["a"])
    np.testing.assert_array_equal(b, io["b"])


def test_other_backends_keep_transformers_mask(has_transformers, tmp_path):
    run = run_script(tmp_path, EXPORT, backend="onnxruntime", TORCHRW_LOG="info").check()
    assert "builtin:transformers.masking_utils" not in run.stderr
    # The premise: transformers' own mask is a bool one, cast and selected.
    assert {"Cast", "Where"} <= op_types(run.path("bert.onnx"))


# scaled_dot_product_attention below opset 14 (rewriters/attention.c) for
# ncnn: a bool mask that is a constant of the graph (DETR's all-ones pixel
# mask, flattened, as transformers builds it), and is_causal, are added to
# the scores, so they fold into a constant instead of leaving a Where on
# the scores, which ncnn has no layer for.
SDPA = """
import numpy as np, torch
import torch.nn.functional as F
torch.manual_seed(0)

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(3))
        keep = torch.ones(1, 1, 6, 6, dtype=torch.bool)
        keep[..., 4:] = False              # the last 2 keys are masked
        self.register_buffer("keep", keep)
    def forward(self, x):
        # ncnn holds at most 4 dims: a projection each, heads in dim 1
        q, k, v = (p(x).reshape(1, 6, 2, 8).transpose(1, 2) for p in self.proj)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=self.keep)
        b = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        c = F.scaled_dot_product_attention(q, k, v)   # no mask: vit's
        return tuple(o.transpose(1, 2).reshape(1, 6, 16) for o in (a, b, c))

m = M().eval()
x = torch.randn(1, 6, 16)
with torch.no_grad():
    want = m(x)
kw = dict(TS, opset_version=13) if TS else {}
torch.onnx.export(m, (x,), "sdpa.onnx", input_names=["x"], **kw)
np.savez("io.npz", x=x.numpy(), a=want[0].numpy(), b=want[1].numpy(), c=want[2].numpy())
"""


def test_sdpa_masks_are_added_for_ncnn(tmp_path):
    """At opset 13 (TorchScript), and under torch.export at 18, where its
    translation guards the softmax with IsNaN and Where."""
    run = run_script(tmp_path, SDPA, backend="ncnn", TORCHRW_LOG="info")
    if "no attribute 'scaled_dot_product_attention'" in run.stderr:
        pytest.skip("torch 1.13 has no F.scaled_dot_product_attention")
    run.check()
    assert "fired builtin:aten::scaled_dot_product_attention@ncnn x3" in run.stderr, run.stderr
    # The causal pattern keeps its lengths dynamic (aranges over Shape, a
    # LessOrEqual, a Cast), which pnnx folds with the static input shape;
    # what ncnn could not run is the Where on the scores.
    ops = op_types(run.path("sdpa.onnx"))
    assert not ops & {"Where", "Not", "IsNaN"}, ops
    io = np.load(run.path("io.npz"))
    for got, name in zip(ort_run(run.path("sdpa.onnx"), {"x": io["x"]}), "abc"):
        np.testing.assert_allclose(got, io[name], rtol=1e-5, atol=1e-6)
    ncnn_matches(run.path("sdpa.onnx"), {"x": io["x"]}, tmp_path / "ncnn",
                 [io["a"], io["b"], io["c"]], rtol=1e-4, atol=1e-4,
                 note=" (ONNX Runtime's outputs matched)")
