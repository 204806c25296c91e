"""Built-in rewriter of rewriters/roberta_ncnn.c: RoBERTa's embeddings
(positions numbered from the padding id on, skipping padding: an int
cumsum of input_ids.ne(pad)) for ncnn in floats, every step an ncnn layer
(Embed, InnerProduct, BinaryOp, ReLU, MatMul), since ncnn has no
comparison, Cast or CumSum layer and refuses the torch.eq pnnx leaves."""

import numpy as np
import onnx
import pytest

from conftest import check_ncnn, engines, ncnn_matches, ort_run, run_script, skip_without


FORWARD = "transformers.models.roberta.modeling_roberta.RobertaEmbeddings.forward"
FIRED = f"fired builtin:{FORWARD}@ncnn"
LEAVES = f"leaves {FORWARD} to the original"
# What ncnn has no layer for, which the original's positions are made of.
NO_NCNN_LAYER = {"Equal", "Not", "CumSum", "Cast"}


@pytest.fixture(scope="module")
def has_transformers():
    skip_without("transformers")


# A 2-layer RoBERTa, random weights, fed as a tokenizer feeds it: int64 ids
# with padding (id 1, RoBERTa's) in the last 4 positions and a mask that
# says so; its embeddings alone with token_type_ids given (a graph input);
# and the embeddings with position_ids given, which the rewriter leaves to
# the original.  The premise is checked too: the padding shifts no
# position but its own, so a file that numbered 0..S-1 would not match.
EXPORT = """
import os
os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np, torch, transformers
torch.manual_seed(0)

class Hidden(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m
    def forward(self, ids, mask):
        return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

class Embed(torch.nn.Module):
    def __init__(self, e, given):
        super().__init__()
        self.e, self.given = e, given
    def forward(self, ids, extra):
        if self.given == "types":
            return self.e(input_ids=ids, token_type_ids=extra)
        return self.e(input_ids=ids, position_ids=extra)

cfg = transformers.RobertaConfig(
    vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, max_position_embeddings=24, type_vocab_size=2)
model = transformers.RobertaModel(cfg).eval()
ids = torch.randint(3, 100, (1, 12))
ids[:, -4:] = cfg.pad_token_id
ids[:, 0] = cfg.bos_token_id
mask = (ids != cfg.pad_token_id).long()
types = torch.zeros_like(ids)
types[:, 6:8] = 1
positions = torch.arange(2, 14).unsqueeze(0)
io = {"ids": ids.numpy(), "mask": mask.numpy(), "types": types.numpy(),
      "positions": positions.numpy()}
# Each wrapper in eval mode: torch.onnx.export restores the mode it found
# on the whole tree, and a wrapper left training would switch the model's
# dropout on for the next net.
nets = (("model", Hidden(model).eval(), (ids, mask), ["ids", "mask"]),
        ("types", Embed(model.embeddings, "types").eval(), (ids, types), ["ids", "types"]),
        ("positions", Embed(model.embeddings, "positions").eval(), (ids, positions),
         ["ids", "positions"]))
with torch.no_grad():
    shifted = model.embeddings(input_ids=ids, position_ids=torch.arange(12).unsqueeze(0))
    assert (shifted - model.embeddings(input_ids=ids)).abs().max() > 1e-3  # positions matter
    for name, m, args, names in nets:
        io["out_" + name] = m(*args).numpy()
        kw = dict(TS, opset_version=13) if TS else {}
        torch.onnx.export(m, args, name + ".onnx", input_names=names, **kw)
np.savez("io.npz", **io)
"""


def op_types(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def inputs_of(name):
    return {"model": ("ids", "mask"), "types": ("ids", "types"),
            "positions": ("ids", "positions")}[name]


@pytest.fixture(scope="module")
def exported(has_transformers, tmp_path_factory):
    d = tmp_path_factory.mktemp("roberta")
    return run_script(d, EXPORT, backend="ncnn", TORCHRW_LOG="info").check()


@pytest.mark.parametrize("name", ["model", "types"])
def test_positions_are_ncnn_layers_and_match(exported, name):
    run = exported
    assert FIRED in run.stderr, run.stderr
    path = run.path(f"{name}.onnx")
    assert not op_types(path) & NO_NCNN_LAYER, op_types(path) & NO_NCNN_LAYER
    rc, said = check_ncnn(path)
    assert rc == 0, said
    io = np.load(run.path("io.npz"))
    got, = ort_run(path, {k: io[k] for k in inputs_of(name)})
    np.testing.assert_allclose(got, io["out_" + name], rtol=1e-5, atol=1e-5)


def test_given_positions_go_to_the_original(exported):
    run = exported
    assert f"{LEAVES}: position_ids are given (nothing to compute)" in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    got, = ort_run(run.path("positions.onnx"), {k: io[k] for k in inputs_of("positions")})
    np.testing.assert_allclose(got, io["out_positions"], rtol=1e-5, atol=1e-5)


# The full model only: pnnx converts by running the file on random ints of
# its own for every int input, which for token_type_ids fall outside a
# 2-row type table (ORT's Gather refuses them inside pnnx).
@pytest.mark.parametrize("name", ["model"])
def test_ncnn_runs_the_rewritten_embeddings(exported, name, tmp_path):
    io = np.load(exported.path("io.npz"))
    ncnn_matches(exported.path(f"{name}.onnx"), {k: io[k] for k in inputs_of(name)}, tmp_path,
                 [io["out_" + name]], rtol=1e-4, atol=1e-4)


def test_without_torchrw_the_positions_are_refused(has_transformers, tmp_path):
    # The premise: torch's export of the int positions is Equal/Not (or
    # Ne), Cast and CumSum, which ncnn refuses to load.
    run = run_script(tmp_path, EXPORT, backend="onnxruntime").check()
    assert FIRED not in run.stderr
    path = run.path("model.onnx")
    assert "CumSum" in op_types(path), op_types(path)
    if engines.missing("ncnn"):
        return
    # torch.export's exporter stores the weights in model.onnx.data, which
    # pnnx cannot read: one file, so that ncnn says what it refuses.
    path = run.path("model-inline.onnx")
    onnx.save(onnx.load(str(run.path("model.onnx"))), str(path))
    io = np.load(run.path("io.npz"))
    with pytest.raises(engines.EngineError, match="not exists or registered"):
        engines.run("ncnn", path, {k: io[k] for k in inputs_of("model")}, tmp_path / "ncnn")
