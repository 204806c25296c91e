"""mmdeploy's own rewriters under torchrw (issue 10): `import torchrw.mmdeploy`
(or TORCHRW_PYTHON=torchrw.mmdeploy) registers every rewriter of mmdeploy
1.3.1's mmdeploy.pytorch in torchrw, and a model exported under torchrw then
has the graph mmdeploy's own RewriterContext gives it.

These tests need an interpreter with mmdeploy and mmengine: scripts/setup
makes .venv-mmdeploy (Debian's python3 and torch 1.13, on which mmdeploy
1.3.1 runs its exports) and scripts/test runs this file with
PYTHON=.venv-mmdeploy/bin/python.  Other interpreters skip it.
"""
import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import (BUILD, EXPORTER, PRELOAD, PYTHON, ort_run, read_report, run_script,
                      with_ts)

_probe = subprocess.run([PYTHON, "-c", "import mmdeploy, mmengine; print(mmdeploy.__version__)"],
                        capture_output=True, text=True, timeout=300)
MMDEPLOY = _probe.stdout.strip().splitlines()[-1] if _probe.returncode == 0 else None
if MMDEPLOY is None:
    pytest.skip(f"mmdeploy is not installed for {PYTHON} (scripts/setup installs it in "
                ".venv-mmdeploy; scripts/test runs this file with that interpreter)",
                allow_module_level=True)
if EXPORTER != "torchscript":
    pytest.skip("mmdeploy 1.3.1 exports with the TorchScript exporter only",
                allow_module_level=True)


def lines(run, prefix):
    return [l[len(prefix):].strip() for l in run.stdout.splitlines() if l.startswith(prefix)]


# --- What mmdeploy registers, and what torchrw lists ------------------------

MMDEPLOY_RECORDS = """
import json, os
import mmdeploy, mmdeploy.pytorch
from mmdeploy.core.rewriters import rewriter_manager as m
from mmdeploy.core.rewriters.rewriter_utils import BackendChecker, IRChecker
out = []
for kind, reg in (("function", m.FUNCTION_REWRITER), ("module", m.MODULE_REWRITER),
                  ("symbolic", m.SYMBOLIC_REWRITER)):
    for name, records in reg._registry._rewrite_records.items():
        for r in records:
            checkers = r["_checkers"]
            backend = [c.required_backend.value for c in checkers if type(c) is BackendChecker]
            ir = [c.required_ir.value for c in checkers if type(c) is IRChecker]
            out.append(dict(kind=kind, name=name, backend=(backend or ["default"])[0],
                            ir=(ir or ["default"])[0], module=r["_object"].__module__,
                            file=r["_object"].__code__.co_filename))
print("RECORDS", json.dumps(out))
"""

TORCHRW_LIST = """
import json, sys
BEFORE
import torchrw, torchrw.mmdeploy
print("MIRRORED", json.dumps(torchrw.mmdeploy.mirrored))
print("LIST", json.dumps([r for r in torchrw.rewriters()
                          if "/mmdeploy/" in r["file"] or r["file"].endswith("mmuser.py")]))
"""


def run_unloaded(tmp_path, code):
    """Runs code without preloading, with torchrw's package importable."""
    return run_script(tmp_path, code, preload=False, PYTHONPATH=BUILD / "python").check()


@pytest.fixture(scope="module")
def mmdeploy_records(tmp_path_factory):
    run = run_unloaded(tmp_path_factory.mktemp("records"), MMDEPLOY_RECORDS)
    return json.loads(lines(run, "RECORDS")[0])


def torchrw_list(tmp_path, before=""):
    run = run_unloaded(tmp_path, TORCHRW_LIST.replace("BEFORE", before))
    return json.loads(lines(run, "MIRRORED")[0]), json.loads(lines(run, "LIST")[0]), run


def key(r):
    return (r["kind"], r["name"], r["backend"], r["ir"])


def test_every_mmdeploy_pytorch_rewriter_registers_with_its_site(tmp_path, mmdeploy_records):
    mirrored, listed, _ = torchrw_list(tmp_path)
    pytorch = [r for r in mmdeploy_records if r["module"].startswith("mmdeploy.pytorch.")]
    files = {(r["kind"], Path(r["file"]).name) for r in pytorch}
    # mmdeploy 1.3.1: 25 files of function rewriters in functions/ and
    # symbolics/lstm.py (which rewrites torch.onnx's RNN helper); 10 of
    # symbolics (9 in symbolics/, and functions/tensor_setitem.py).
    assert len({f for k, f in files if k == "function"}) == 26, files
    assert len({f for k, f in files if k == "symbolic"}) == 10, files
    assert sum(mirrored.values()) == len(mmdeploy_records)
    # The graph tests below name each of mmdeploy.pytorch's rewriters.
    stable = {f"{r['name']}@{r['backend']}" for r in pytorch}
    assert len(stable) == len(pytorch)
    assert stable == set(CASES) | set(NOT_EXERCISED) | {TORCHSCRIPT_CASE}
    by_key = {key(r): r for r in listed}
    for record in mmdeploy_records:
        got = by_key.get(key(record))
        assert got is not None, f"{key(record)} is not registered in torchrw"
        assert got["file"] == record["file"]
        assert got["lang"] == "python"
        # The line is the register_*() decorator that registered this record.
        text = Path(got["file"]).read_text().splitlines()
        call = " ".join(text[got["line"] - 1:got["line"] + 3])
        assert ".register_" in text[got["line"] - 1], (got, text[got["line"] - 1])
        name = record["name"].split(".")[-1]
        assert name in call or record["name"] in call, (got, call)


MMUSER = """
import torch
from mmdeploy.core import FUNCTION_REWRITER, MODULE_REWRITER, SYMBOLIC_REWRITER
from mmdeploy.utils import Backend


def f(x):
    return x


@FUNCTION_REWRITER.register_rewriter(
    func_name="mmuser.f", backend=Backend.NCNN.value)
@FUNCTION_REWRITER.register_rewriter(
    func_name="mmuser.f", backend="tensorrt")
@FUNCTION_REWRITER.register_rewriter("mmuser.g")
def f_rewritten(x):
    return FUNCTION_REWRITER.get_context().origin_func(x) + 1


if True:
    @SYMBOLIC_REWRITER.register_symbolic("mmuser.Fn", backend="ncnn")
    def fn_symbolic(g, x):
        return x


@MODULE_REWRITER.register_rewrite_module("mmuser.Block", backend="tensorrt", scale=3)
class BlockWrapper(torch.nn.Module):
    def __init__(self, module, cfg, scale=1):
        super().__init__()
        self.scale = scale


@FUNCTION_REWRITER.register_rewriter("mmuser.f", backend="vacc")
def f_vacc(x):
    return x
"""


def line_of(text, code=MMUSER):
    return code.splitlines().index(text) + 1


def test_sites_are_the_same_whether_mmdeploy_registered_first(tmp_path):
    # Registered before the switch, a record's site comes from its decorator
    # in the source; after it, from the calling frame.  Both say the same.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "mmuser.py").write_text(MMUSER)
    _, before, run_before = torchrw_list(tmp_path / "a", before="import sys; sys.path.insert(0, '.')\n"
                                "import mmdeploy, mmuser\n")
    _, after, run_after = torchrw_list(tmp_path / "b", before="import sys; sys.path.insert(0, '.')\n"
                               "import torchrw.mmdeploy, mmuser\n")
    def site(listed):
        return sorted((key(r), Path(r["file"]).name, r["line"])
                      for r in listed if r["name"].startswith("mmuser."))

    f = line_of("@FUNCTION_REWRITER.register_rewriter(")
    assert site(after) == [
        (("function", "mmuser.f", "ncnn", "default"), "mmuser.py", f),
        (("function", "mmuser.f", "tensorrt", "default"), "mmuser.py", f + 2),
        (("function", "mmuser.g", "default", "default"), "mmuser.py", f + 4),
        (("module", "mmuser.Block", "tensorrt", "default"), "mmuser.py",
         line_of('@MODULE_REWRITER.register_rewrite_module("mmuser.Block", backend="tensorrt", '
                 'scale=3)')),
        (("symbolic", "mmuser.Fn", "ncnn", "default"), "mmuser.py",
         line_of('    @SYMBOLIC_REWRITER.register_symbolic("mmuser.Fn", backend="ncnn")'))]
    assert site(before) == site(after)
    # A backend torchrw does not know: left out, and said.
    vacc = line_of('@FUNCTION_REWRITER.register_rewriter("mmuser.f", backend="vacc")')
    for run in (run_before, run_after):
        assert (f"mmuser.py:{vacc}: FUNCTION_REWRITER mmuser.f is for backend 'vacc', "
                "which torchrw does not know") in run.stderr, run.stderr[-2000:]


def test_torchrw_list_shows_mmdeploy_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env["PYTHON"] = PYTHON  # the interpreter torchrw list asks
    proc = subprocess.run([str(BUILD / "tools" / "torchrw"), "list", "--backend", "ncnn",
                           "--python", "torchrw.mmdeploy"],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    if proc.returncode != 0 and "--python" in proc.stderr:
        pytest.fail(f"torchrw list refused --python: {proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    assert "mmdeploy/pytorch/functions/size.py:7" in proc.stdout, proc.stdout[-3000:]
    assert "mmdeploy/pytorch/symbolics/gelu.py:14" in proc.stdout


LATE = """
import json, torch
import mmdeploy
from mmdeploy.core import FUNCTION_REWRITER as EARLY   # bound before the switch
import torchrw.mmdeploy
from mmdeploy.core import FUNCTION_REWRITER
from mmdeploy.core.rewriters.rewriter_utils import LibVersionChecker
from mmdeploy.utils import Backend, IR
assert EARLY is FUNCTION_REWRITER

def double(x):
    return x * 2

@FUNCTION_REWRITER.register_rewriter(
    "__main__.double", backend=Backend.TENSORRT.value,
    extra_checkers=LibVersionChecker("mmdeploy", min_version="1.0"))
def double__tensorrt(x):
    ctx = EARLY.get_context()
    print("CTX", ctx.backend, ctx.opset, ctx.cfg["onnx_config"]["opset_version"],
          ctx.origin_func is not None)
    return ctx.origin_func(x) + 1

@FUNCTION_REWRITER.register_rewriter("__main__.double", ir=IR.TORCHSCRIPT)
def double__torchscript(x):
    return x

@FUNCTION_REWRITER.register_rewriter("__main__.double", backend="tensorrt",
                                     extra_checkers=LibVersionChecker("mmdeploy", min_version="99"))
def double__never(x):
    return x - 100

class M(torch.nn.Module):
    def forward(self, x):
        return double(x)
torch.onnx.export(M(), (torch.ones(2),), "model.onnx", opset_version=13, **TS)
import onnx
print("OPS", [n.op_type for n in onnx.load("model.onnx").graph.node])
import torchrw
print("SITES", sorted(r["line"] for r in torchrw.rewriters() if r["name"] == "__main__.double"))
"""


def test_registrations_after_the_switch_go_to_torchrw(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"onnx_config": {"opset_version": 13}}))
    run = run_script(tmp_path, LATE, backend="tensorrt", TORCHRW_CONFIG=cfg).check()
    assert lines(run, "CTX") == ["tensorrt 13 13 True"]
    assert lines(run, "OPS") == ["['Constant', 'Mul', 'Constant', 'Add']"]
    assert lines(run, "SITES") == ["[14, 23, 27]"]


def test_mmdeploy_rewriter_context_runs_torchrw(tmp_path):
    # mmdeploy's own RewriterContext, after the switch, opens torchrw's.
    run = run_unloaded(tmp_path, """
import torch, torchrw.mmdeploy
from mmdeploy.core import RewriterContext
class M(torch.nn.Module):
    def forward(self, x):
        return x.repeat(3)
with RewriterContext({}, backend="tensorrt", opset=11):
    torch.onnx.export(M(), (torch.arange(4.0),), "model.onnx", opset_version=11, **TS)
import onnx
print("OPS", [n.op_type for n in onnx.load("model.onnx").graph.node])
""")
    assert lines(run, "OPS") == [
        "['Unsqueeze', 'Constant', 'Constant', 'ConstantOfShape', 'Expand', 'Tile', "
        "'Squeeze']"]


# --- Each rewriter of mmdeploy.pytorch: the same graph as mmdeploy's --------

# Small models, each calling what one family of rewriters targets.  `args`
# is the inputs; DYNAMIC, when set, the export's dynamic_axes (also put in
# the config, where mmdeploy's rewriters read it).
def simple(inputs, result, args):
    """A model without parameters: forward(inputs) returns result; args are
    the example inputs (Python expressions)."""
    return (f"class M(torch.nn.Module):\n    def forward(self, {inputs}):\n"
            f"        return {result}\nargs = ({args},)\n")


MODELS = {
    "adaptive_pool": simple("x", "F.adaptive_avg_pool2d(x, (2, 3))", "torch.rand(1, 3, 8, 9)"),
    "any": simple("x", "torch.any(x > 0.5), (x > 0.2).any(dim=1, keepdim=True)",
                  "torch.rand(3, 4)"),
    "atan2": simple("x, y", "torch.atan2(x, y)", "torch.randn(3, 4), torch.randn(3, 4)"),
    "cat": simple("x, y", "torch.cat([x > 0, y > 0], 1)", "torch.randn(2, 3), torch.randn(2, 2)")
    + 'DYNAMIC = {"in0": {0: "b"}, "in1": {0: "b"}}\n',
    "chunk": simple("x", "x.chunk(3, dim=1)", "torch.randn(1, 7, 4)"),
    "clip": simple("x", "(torch.clamp(x, -0.5, 0.5), x.clamp(min=-0.2), torch.clip(x, max=0.3), "
                   "x.clip(-0.1, 0.1))", "torch.randn(3, 4)"),
    "copy": "import copy\n" + simple("x", "copy.deepcopy(x) + 1", "torch.randn(3, 4)"),
    "copy_": """
class M(torch.nn.Module):
    def forward(self, x):
        w = torch.zeros(2, 5)
        w.copy_(x)
        return w + 1
args = (torch.randn(2, 5),)
""",
    "expand": simple("x, y", "x.expand(1, -1, -1) + y",
                     "torch.randn(1, 3, 4), torch.randn(1, 3, 4)"),
    "flatten": simple("x", "torch.flatten(x, 1), x.flatten(2)", "torch.randn(1, 2, 3, 4)"),
    "getattribute": simple("x", "x.view(x.shape[0], x.shape[1] * x.shape[2])",
                           "torch.randn(2, 3, 4)"),
    "group_norm": """
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.GroupNorm(2, 4)
        torch.nn.init.normal_(self.norm.weight)
        torch.nn.init.normal_(self.norm.bias)
    def forward(self, x):
        return self.norm(x)
args = (torch.randn(1, 4, 3, 5),)
""",
    "interpolate": simple("x", "F.interpolate(x, scale_factor=2.0), F.interpolate(x, size=(6, 10))",
                          "torch.randn(1, 2, 3, 5)"),
    "interpolate_bicubic": simple(
        "x", "F.interpolate(x, scale_factor=2.0, mode='bicubic', align_corners=False)",
        "torch.randn(1, 2, 3, 5)"),
    "linear": """
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 5)
        self.fc2 = torch.nn.Linear(8, 5, bias=False)
    def forward(self, x, y):
        return self.fc(x), self.fc2(x), self.fc(y)
args = (torch.randn(1, 4, 8), torch.randn(2, 3, 8))
""",
    "linspace": simple("x", "x + torch.linspace(0, 1, 5), torch.linspace(-2, 3, steps=4)",
                       "torch.randn(3, 5)"),
    "masked_fill": simple("x", "(x.masked_fill(x > 0.5, float('-inf')).softmax(-1), "
                          "torch.masked_fill(x, x < 0.1, float('-inf')).softmax(-1))",
                          "torch.randn(3, 4)"),
    # Positive: torch 1.13 exports x // 3 of a float as a truncation.
    "mod": simple("x", "x % 3", "torch.rand(3, 4) * 10"),
    # torch 1.13's MultiheadAttention does not call this function; mmdeploy's
    # rewriter takes 3-D inputs.
    "attention": simple("q, k, v", "F._scaled_dot_product_attention(q, k, v)[0]",
                        ", ".join(["torch.randn(1, 5, 8)"] * 3)),
    "sdpa": simple("q, k, v", "F.scaled_dot_product_attention(q, k, v)",
                   ", ".join(["torch.randn(1, 2, 5, 8)"] * 3)),
    "normalize": simple("x", "F.normalize(x, dim=1), torch.norm(x, dim=2)", "torch.randn(1, 4, 3)"),
    "pad": simple("x", "F.pad(x, (1, 2, 0, 1))", "torch.randn(1, 2, 3, 4)"),
    "repeat": simple("x", "x.repeat(3)", "torch.randn(4)"),
    "size": simple("x", "x.view(x.size(0), -1) * x.size(-1), x.new_zeros(x.size())",
                   "torch.randn(2, 3, 4)"),
    # Negative indices inside a tuple only: mmdeploy's rewriter turns a bare
    # negative index into self.dim() + index, not size(0) + index.
    "getitem": simple("x", "x[1], x[:, -1], x[..., -2]", "torch.randn(2, 3, 4)"),
    "setitem": """
class M(torch.nn.Module):
    def forward(self, x, y):
        x = x.clone()
        x[:, 1:3] = y
        return x
args = (torch.randn(2, 5), torch.randn(2, 2))
""",
    "topk": simple("x", "torch.topk(x, 3)[0], x.topk(2, dim=0)[1]", "torch.randn(4, 6)"),
    "triu": simple("x", "torch.triu(x, 1), x.triu()", "torch.randn(4, 5)"),
    "lstm": """
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 3)
    def forward(self, x):
        return self.rnn(x)[0]
args = (torch.randn(5, 1, 4),)
""",
    "gelu": simple("x", "F.gelu(x)", "torch.randn(3, 4)"),
    "grid_sample": simple("x, grid", "F.grid_sample(x, grid, align_corners=False)",
                          "torch.randn(1, 2, 4, 5), torch.rand(1, 3, 3, 2) * 2 - 1"),
    "hardsigmoid": simple("x", "F.hardsigmoid(x)", "torch.randn(3, 4)"),
    "layer_norm": """
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(4)
    def forward(self, x):
        return self.norm(x)
args = (torch.randn(2, 3, 4),)
""",
    "roll": simple("x", "torch.roll(x, 1, 1), torch.roll(x, (1, -2), (0, 1))", "torch.randn(3, 4)"),
    "squeeze": simple("x", "x.squeeze(0), x.squeeze()", "torch.randn(1, 3, 1, 4)"),
}

# Each rewriter of mmdeploy.pytorch (its torchrw stable name, with the
# backend it is registered for), by the model that calls what it targets.
# The export is for that backend (onnxruntime for the default one), at
# opset 11 unless OPSETS says otherwise.
F_ = "torch.nn.functional."
EXERCISED_BY = {
    "adaptive_pool": [F_ + "adaptive_avg_pool2d@default",
                      F_ + "adaptive_avg_pool2d@torchscript",
                      F_ + "adaptive_avg_pool2d@ncnn", "adaptive_avg_pool2d@ncnn"],
    "any": ["torch.any@default", "torch.Tensor.any@default"],
    "atan2": ["torch.atan2@default"],
    "cat": ["torch.cat@tensorrt"],
    "chunk": ["torch.Tensor.chunk@ncnn"],
    "clip": ["torch.clamp@coreml", "torch.Tensor.clamp@coreml", "torch.clip@coreml",
             "torch.Tensor.clip@coreml"],
    "copy": ["copy.deepcopy@default"],
    "expand": ["torch.Tensor.expand@ncnn"],
    "flatten": ["torch.flatten@ncnn", "torch.Tensor.flatten@ncnn", "torch.flatten@coreml",
                "torch.Tensor.flatten@coreml"],
    "getattribute": ["torch.Tensor.__getattribute__@ncnn"],
    "group_norm": [F_ + "group_norm@ncnn", "group_norm@tensorrt"],
    "interpolate": [F_ + "interpolate@ncnn", F_ + "interpolate@rknn"],
    "interpolate_bicubic": [F_ + "interpolate@tensorrt"],
    "linear": [F_ + "linear@ncnn", "linear@ncnn"],
    "linspace": ["torch.linspace@default"],
    "masked_fill": ["torch.masked_fill@onnxruntime", "torch.Tensor.masked_fill@onnxruntime"],
    "mod": ["torch.Tensor.__mod__@tensorrt"],
    "attention": [F_ + "_scaled_dot_product_attention@tensorrt"],
    "sdpa": [F_ + "scaled_dot_product_attention@default"],
    "normalize": [F_ + "normalize@ncnn", "torch.norm@ncnn"],
    "pad": ["torch.onnx.symbolic_opset11._prepare_onnx_paddings@tensorrt"],
    "repeat": ["torch.Tensor.repeat@tensorrt"],
    "size": ["torch.Tensor.size@ncnn", "torch.Tensor.size@ascend"],
    "getitem": ["torch.Tensor.__getitem__@ascend"],
    "setitem": ["torch.Tensor.__setitem__@default"],
    "topk": ["torch.topk@default", "torch.Tensor.topk@default", "torch.topk@tensorrt",
             "torch.Tensor.topk@tensorrt", "torch.topk@coreml", "torch.Tensor.topk@coreml"],
    "triu": ["torch.triu@default", "torch.Tensor.triu@default"],
    "lstm": ["torch.onnx.symbolic_opset9._generic_rnn@ncnn"],
    "copy_": ["copy@default"],
    "gelu": ["gelu@ncnn"],
    "grid_sample": ["grid_sampler@default"],
    "hardsigmoid": ["hardsigmoid@default"],
    "layer_norm": ["layer_norm@default", "layer_norm@ncnn"],
    "roll": ["roll@default"],
    "squeeze": ["squeeze@default"],
}
OPSETS = {"sdpa": 14}
CASES = {rewriter: (model, rewriter.rsplit("@", 1)[1].replace("default", "onnxruntime"),
                    OPSETS.get(model, 11))
         for model, rewriters in EXERCISED_BY.items() for rewriter in rewriters}

# Exercised by test_torchscript_ir_rewriter_traces_as_in_mmdeploy.
TORCHSCRIPT_CASE = "torch.Tensor.chunk@default"
# Rewriters that no model can exercise here, and why.
NOT_EXERCISED = {
    F_ + "scaled_dot_product_attention@default":
        "torch 1.13 has no torch.nn.functional.scaled_dot_product_attention (torch 2.0 on)",
}
# The graph mmdeploy's rewriter gives is torch's own: the rewriter only
# calls the original for this model (or at all).
SAME_AS_PLAIN = {
    F_ + "adaptive_avg_pool2d@torchscript": "calls the original (keeps the default's rewrite away)",
    "torch.Tensor.size@ncnn": "torch 1.13's tracer already records these sizes as constants",
    "torch.Tensor.__getattribute__@ncnn":
        "torch 1.13's tracer already records these sizes as constants",
    "torch.Tensor.size@ascend": "torch 1.13 exports these sizes the same way",
    "hardsigmoid@default": "torch 1.13's own symbolic gives HardSigmoid too",
    "roll@default": "torch 1.13's own roll symbolic gives the same Slice/Concat",
    "torch.clamp@coreml": "torch 1.13 exports number bounds as the constant inputs the "
                          "rewriter's tensors give",
    "torch.Tensor.clamp@coreml": "as torch.clamp@coreml",
    "torch.clip@coreml": "as torch.clamp@coreml",
    "torch.Tensor.clip@coreml": "as torch.clamp@coreml",
}
# Graphs whose numerics are not compared with PyTorch's, and why.
NOT_RUNNABLE = {
    "copy@default": "mmdeploy's copy symbolic returns the destination and drops the "
                    "source: the graph is not meant to compute what x.copy_(y) does",
    "linear@ncnn": "ncnn's Gemm takes a 3-D input, which ONNX's Gemm does not",
    F_ + "linear@ncnn": "ncnn's Gemm takes a 3-D input, which ONNX's Gemm does not",
    # mmdeploy/pytorch/functions/atan2.py: atan(y / (x + 1e-6)), which is
    # off by pi wherever x < 0 (torchrw's own builtin:torch.atan2@default
    # keeps the quadrants): the same graph as mmdeploy's, wrong as there.
    "torch.atan2@default": "mmdeploy's rewriter is atan(y / x), off by pi where x < 0",
}

SCRIPT = """
import json, sys
import numpy as np, torch
import torch.nn.functional as F
MODE, BACKEND, OPSET = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
DYNAMIC = None
MODEL
model = M().eval()
names = ["in%d" % i for i in range(len(args))]
kw = dict(opset_version=OPSET, input_names=names, **TS)
if DYNAMIC:
    kw["dynamic_axes"] = DYNAMIC
cfg = json.load(open("cfg.json"))
if MODE == "mmdeploy":
    try:  # torch alone, for comparison: without a rewriter some do not export
        torch.onnx.export(model, args, "plain.onnx", **kw)
    except Exception as e:
        print("PLAIN", type(e).__name__, str(e).splitlines()[0])
    from mmdeploy.core import RewriterContext
    with RewriterContext(cfg, backend=BACKEND, opset=OPSET):
        torch.onnx.export(model, args, "mmdeploy.onnx", **kw)
else:
    torch.onnx.export(model, args, "torchrw.onnx", **kw)
    out = model(*args)
    out = out if isinstance(out, (tuple, list)) else (out,)
    np.savez("io.npz", **{n: a.numpy() for n, a in zip(names, args)},
             **{"out%d" % i: o.detach().numpy() for i, o in enumerate(out)})
"""


def attribute_value(a):
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, onnx.TensorProto):
        arr = numpy_helper.to_array(v)
        return ("tensor", arr.dtype.str, arr.shape, arr.tobytes())
    if isinstance(v, onnx.GraphProto):
        return ("graph", signature(v))
    if isinstance(v, list):
        return tuple(attribute_value_of(x) for x in v)
    return v


def attribute_value_of(x):
    if isinstance(x, onnx.TensorProto):
        arr = numpy_helper.to_array(x)
        return ("tensor", arr.dtype.str, arr.shape, arr.tobytes())
    if isinstance(x, onnx.GraphProto):
        return ("graph", signature(x))
    return x


def signature(graph):
    """The graph's nodes in order: domain, op type and attributes."""
    return [(n.domain, n.op_type,
             tuple((a.name, attribute_value(a)) for a in sorted(n.attribute, key=lambda a: a.name)))
            for n in graph.node]


@pytest.fixture(scope="module")
def torchrw_builtins(tmp_path_factory):
    """torchrw's own rewriters' stable names, without torchrw.mmdeploy."""
    run = run_unloaded(tmp_path_factory.mktemp("builtins"), """
import json, torchrw
print("NAMES", json.dumps([r["stable"] for r in torchrw.rewriters()]))
""")
    return set(json.loads(lines(run, "NAMES")[0]))


@pytest.fixture(scope="module")
def mmdeploy_names(tmp_path_factory):
    _, listed, _ = torchrw_list(tmp_path_factory.mktemp("names"))
    return {r["stable"] for r in listed}


def export_both(tmp_path, model, backend, opset, builtins, mm_names):
    """Exports the model in two processes: under mmdeploy's RewriterContext
    (and once plainly), and preloaded under torchrw with torchrw.mmdeploy."""
    code = MODELS[model]
    cfg = {"backend_config": {"type": backend}, "onnx_config": {"opset_version": opset}}
    if "DYNAMIC" in code:
        cfg["onnx_config"]["dynamic_axes"] = {"in0": {"0": "b"}, "in1": {"0": "b"}}
    script = with_ts(SCRIPT.replace("MODEL", textwrap.dedent(code)))
    for side in ("mm", "trw"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "cfg.json").write_text(json.dumps(cfg))
        (tmp_path / side / "export.py").write_text(script)
    mm = run_args(tmp_path / "mm", ["mmdeploy", backend, str(opset)])
    # torchrw's own rewriters that mmdeploy's did not replace are switched off.
    disable = sorted(builtins - mm_names)
    trw = run_args(tmp_path / "trw", ["torchrw", backend, str(opset)], LD_PRELOAD=PRELOAD,
                   TORCHRW_BACKEND=backend, TORCHRW_PYTHON="torchrw.mmdeploy",
                   TORCHRW_CONFIG=tmp_path / "trw" / "cfg.json",
                   TORCHRW_DISABLE=",".join(disable),
                   TORCHRW_REPORT=tmp_path / "trw" / "report.json")
    return mm, trw


def run_args(workdir, argv, **env):
    """Runs workdir/export.py with argv, only the TORCHRW_ variables given."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("TORCHRW_") and k != "LD_PRELOAD"}
    base.update({k: str(v) for k, v in env.items()})
    return subprocess.run([PYTHON, "export.py", *argv], cwd=workdir, env=base,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("rewriter", sorted(CASES) + sorted(set(NOT_EXERCISED) - set(CASES)))
def test_same_graph_as_mmdeploy(tmp_path, rewriter, torchrw_builtins, mmdeploy_names):
    if rewriter in NOT_EXERCISED:
        pytest.skip(NOT_EXERCISED[rewriter])
    model, backend, opset = CASES[rewriter]
    mm, trw = export_both(tmp_path, model, backend, opset, torchrw_builtins, mmdeploy_names)
    assert mm.returncode == 0, f"mmdeploy's export failed:\n{mm.stderr[-4000:]}"
    assert trw.returncode == 0, f"the export under torchrw failed:\n{trw.stderr[-4000:]}"
    plain_path = tmp_path / "mm" / "plain.onnx"
    plain = signature(onnx.load(str(plain_path)).graph) if plain_path.exists() else None
    ours = onnx.load(str(tmp_path / "trw" / "torchrw.onnx"))
    theirs = onnx.load(str(tmp_path / "mm" / "mmdeploy.onnx"))
    ours_sig, theirs_sig = signature(ours.graph), signature(theirs.graph)
    assert [s[:2] for s in ours_sig] == [s[:2] for s in theirs_sig]
    assert ours_sig == theirs_sig
    # The rewriter ran under torchrw.
    fired = {f["name"] for t in read_report(tmp_path / "trw" / "report.json") for f in t["fired"]}
    assert rewriter in fired, f"{rewriter} did not fire: {sorted(fired)}"
    # And it changed something, unless said otherwise.
    if rewriter in SAME_AS_PLAIN:
        assert plain == theirs_sig, "SAME_AS_PLAIN is out of date"
    else:  # None: torch alone cannot export the model
        assert plain != theirs_sig, "mmdeploy's export is torch's own"
    # ONNX Runtime computes what PyTorch does, where it runs the graph.
    if rewriter in NOT_RUNNABLE or any(n.domain not in ("", "ai.onnx") for n in ours.graph.node):
        return
    io = np.load(tmp_path / "trw" / "io.npz")
    inputs = {i.name: io[i.name] for i in ours.graph.input if i.name in io.files}
    outs = ort_run(tmp_path / "trw" / "torchrw.onnx", inputs)
    expected = [io[k] for k in sorted((k for k in io.files if k.startswith("out")),
                                      key=lambda k: int(k[3:]))]
    assert len(outs) == len(expected)
    for got, want in zip(outs, expected):
        np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-4, atol=1e-5)


# --- The rewriter for IR torchscript: the same traced graph -----------------

TRACE = """
import json, sys, torch
from mmdeploy.utils import IR
class M(torch.nn.Module):
    def forward(self, x):
        return x.chunk(2, dim=1)
args = (torch.randn(1, 4, 3),)
def kinds(traced):
    return [n.kind() for n in traced.inlined_graph.nodes()]
if sys.argv[1] == "mmdeploy":
    print("PLAIN", json.dumps(kinds(torch.jit.trace(M(), args))))
    from mmdeploy.core import RewriterContext
    with RewriterContext({}, backend="torchscript", ir=IR.TORCHSCRIPT):
        print("KINDS", json.dumps(kinds(torch.jit.trace(M(), args))))
else:
    print("KINDS", json.dumps(kinds(torch.jit.trace(M(), args))))
"""


def test_torchscript_ir_rewriter_traces_as_in_mmdeploy(tmp_path):
    # torch.Tensor.chunk@default is registered for IR torchscript only:
    # torch.jit.trace outside an ONNX export.
    for side in ("mm", "trw"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "export.py").write_text(with_ts(TRACE))
    mm = run_args(tmp_path / "mm", ["mmdeploy"])
    trw = run_args(tmp_path / "trw", ["torchrw"], LD_PRELOAD=PRELOAD,
                   TORCHRW_BACKEND="torchscript", TORCHRW_PYTHON="torchrw.mmdeploy",
                   TORCHRW_REPORT=tmp_path / "report.json")
    assert mm.returncode == 0, mm.stderr[-3000:]
    assert trw.returncode == 0, trw.stderr[-3000:]
    theirs = lines(mm, "KINDS")
    assert "aten::split" in theirs[0] and "aten::chunk" in lines(mm, "PLAIN")[0]
    assert lines(trw, "KINDS") == theirs
    fired = {f["name"] for t in read_report(tmp_path / "report.json") for f in t["fired"]}
    assert TORCHSCRIPT_CASE in fired, fired


# --- mmengine's Config as a RewriterContext's cfg (issue 10, item 6) -------

MMENGINE_CFG = """
import io, torch, onnx, torchrw
from mmengine import Config
from torchrw import FUNCTION_REWRITER

@FUNCTION_REWRITER.register_rewriter("torch.nn.functional.relu", backend="tensorrt")
def relu_as_clamp(x, inplace=False):
    ctx = FUNCTION_REWRITER.get_context()
    print("CFG", type(ctx.cfg).__name__, ctx.cfg.backend_config.type,
          ctx.cfg.onnx_config.opset_version, ctx.cfg.codebase_config.get("path"))
    return x.clamp(min=0)

class M(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.relu(x)

# A Config holds what JSON cannot (a Path): it is kept as its str().
from pathlib import Path
cfg = Config(dict(backend_config=dict(type="tensorrt"), onnx_config=dict(opset_version=11),
                  codebase_config=dict(path=Path("/models/x"))))
with torchrw.RewriterContext(cfg=cfg):
    buf = io.BytesIO()
    torch.onnx.export(M(), (torch.ones(2),), buf, opset_version=11, **TS)
print("OPS", [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node])
"""


def test_rewriter_context_takes_an_mmengine_config(tmp_path):
    run = run_unloaded(tmp_path, MMENGINE_CFG)
    assert lines(run, "CFG") == ["Config tensorrt 11 /models/x"]
    ops = lines(run, "OPS")[0]
    assert "Relu" not in ops and "Clip" in ops, ops
