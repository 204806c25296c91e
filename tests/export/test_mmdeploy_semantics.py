"""What mmdeploy users rely on and torchrw does as mmdeploy does (issue 10):
get_context(name) from a shared function, homonyms, Python rewriters that
torch.onnx calls after the trace, users' rewriters over built-ins, and a
RewriterContext collected without __exit__."""
import json

import pytest

from conftest import BUILD, EXPORTER, TORCH, run_script, torchscript_only


def lines(run, prefix):
    return [l[len(prefix):].strip() for l in run.stdout.splitlines() if l.startswith(prefix)]


SHARED = """
import io, torch
from torchrw import FUNCTION_REWRITER
# In a dict: module globals that hold a patched function are patched too.
ORIGINAL = {"add": torch.add}

@FUNCTION_REWRITER.register_rewriter("torch.add", backend="tensorrt")
@FUNCTION_REWRITER.register_rewriter("torch.mul", backend="tensorrt")
def add_or_mul(x, y):
    me = FUNCTION_REWRITER.get_context()
    add = FUNCTION_REWRITER.get_context("torch.add")
    print("CTX", me.target, add.target, add.name, add.origin_func is ORIGINAL["add"],
          add.cfg.get("marker"), add.backend)
    return me.origin_func(x, y)

class M(torch.nn.Module):
    def forward(self, x):
        return torch.mul(x, 3.0)

torch.onnx.export(M(), (torch.ones(2),), io.BytesIO(), opset_version=13, **TS)
"""


def test_get_context_by_name_from_a_function_serving_several_targets(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"marker": "m1"}))
    run = run_script(tmp_path, SHARED, backend="tensorrt", TORCHRW_CONFIG="cfg.json").check()
    assert lines(run, "CTX") == ["torch.mul torch.add torch.add@tensorrt True m1 tensorrt"]


# A class and a function that a package re-exports: two dotted paths each.
PKG_IMPL = """
import torch

def helper(x):
    return x + 1

class Block(torch.nn.Module):
    def scale(self, x):
        return x * 2

    def forward(self, x):
        return helper(self.scale(x))
"""

HOMONYMS = """
import io, sys, torch
sys.path.insert(0, ".")
from torchrw import FUNCTION_REWRITER
import pkg
REGISTRATIONS

torch.onnx.export(pkg.Block(), (torch.ones(2),), io.BytesIO(), opset_version=13, **TS)
print("RESTORED", pkg.Block.scale is pkg.impl.Block.scale, pkg.helper is pkg.impl.helper,
      type(pkg.helper).__name__)
"""

REWRITER = """
@FUNCTION_REWRITER.register_rewriter("{path}", backend="{backend}")
def rw_{n}(*args):
    print("RAN {backend} {path}")
    return FUNCTION_REWRITER.get_context().origin_func(*args)
"""


@pytest.mark.parametrize("target", ["Block.scale", "helper"])
@pytest.mark.parametrize("backend_first", [True, False])
def test_homonyms_the_backends_rewriter_wins_whatever_the_order(tmp_path, target, backend_first):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "impl.py").write_text(PKG_IMPL)
    (pkg / "__init__.py").write_text("from .impl import Block, helper\n")
    regs = [("pkg.impl." + target, "tensorrt"), ("pkg." + target, "default")]
    if not backend_first:
        regs.reverse()
    code = "".join(REWRITER.format(path=p, backend=b, n=i) for i, (p, b) in enumerate(regs))
    run = run_script(tmp_path, HOMONYMS.replace("REGISTRATIONS", code), backend="tensorrt",
                     TORCHRW_LOG="info").check()
    ran = [l for l in run.stdout.splitlines() if l.startswith("RAN")]
    assert ran == [f"RAN tensorrt pkg.impl.{target}"], run.stdout
    assert "reach the same function; pkg.impl.%s@tensorrt applies" % target in run.stderr
    assert lines(run, "RESTORED") == ["True True function"]


# torch.onnx calls its padding helper while it converts the traced graph,
# after the trace: mmdeploy rewrites it for tensorrt.
PADDINGS = """
import io, torch, importlib
from torchrw import FUNCTION_REWRITER
PATH = "MODULE"
mod = importlib.import_module(PATH)
ORIGINAL = {"paddings": mod._prepare_onnx_paddings}

@FUNCTION_REWRITER.register_rewriter(PATH + "._prepare_onnx_paddings", backend="tensorrt")
def paddings(g, input, pad):
    ctx = FUNCTION_REWRITER.get_context()
    print("PADDINGS", ctx.opset, ctx.origin_func is ORIGINAL["paddings"])
    return ctx.origin_func(g, input, pad)

class M(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.pad(x, (1, 2), mode="reflect")

torch.onnx.export(M(), (torch.rand(1, 2, 5),), io.BytesIO(), opset_version=11, **TS)
print("RESTORED", mod._prepare_onnx_paddings is ORIGINAL["paddings"])
"""


@torchscript_only("torch.onnx's TorchScript conversion helpers; torch.export's exporter "
                  "has none")
def test_python_rewriters_torch_onnx_calls_after_the_trace_run(tmp_path):
    module = ("torch.onnx.symbolic_opset11" if TORCH < (2, 9)
              else "torch.onnx._internal.torchscript_exporter.symbolic_opset11")
    run = run_script(tmp_path, PADDINGS.replace("MODULE", module), backend="tensorrt",
                     TORCHRW_LOG="info").check()
    assert lines(run, "PADDINGS") == ["11 True"]
    assert lines(run, "RESTORED") == ["True"]
    assert f"fired {module}._prepare_onnx_paddings@tensorrt x1" in run.stderr
    # Other backends: the helper is torch's own.
    run = run_script(tmp_path, PADDINGS.replace("MODULE", module), backend="ncnn").check()
    assert lines(run, "PADDINGS") == []


# The built-in topk rewriter is registered for the ONNX IR only; a user's
# registration without an IR still wins.
TOPK = """
import io, torch, torchrw
from torchrw import FUNCTION_REWRITER

@FUNCTION_REWRITER.register_rewriter("torch.topk")
def my_topk(x, k, *args, **kwargs):
    print("MINE", k)
    return FUNCTION_REWRITER.get_context().origin_func(x, k, *args, **kwargs)

class M(torch.nn.Module):
    def forward(self, x):
        return torch.topk(x, 2)[0]

torch.onnx.export(M(), (torch.rand(5),), io.BytesIO(), opset_version=13, **TS)
print("SELECTED", torchrw.selected("function", "torch.topk", "onnxruntime"))
"""


def test_a_users_rewriter_beats_the_builtin_of_the_same_target_and_backend(tmp_path):
    run = run_script(tmp_path, TOPK, backend="onnxruntime", TORCHRW_LOG="info").check()
    assert lines(run, "SELECTED") == ["torch.topk@default"]
    assert lines(run, "MINE") == ["2"]
    assert ("export.py:5 takes precedence over the built-in builtin:torch.topk@default "
            "registered at rewriters/topk.c:") in run.stderr
    assert "fired builtin:torch.topk@default" not in run.stderr
    # The stable names differ: switching off the user's brings the built-in back.
    run = run_script(tmp_path, TOPK, backend="onnxruntime", TORCHRW_LOG="info",
                     TORCHRW_DISABLE="torch.topk@default").check()
    assert lines(run, "SELECTED") == ["builtin:torch.topk@default"]
    assert lines(run, "MINE") == []


FORGOTTEN = f"""
import gc, io, sys
sys.path.insert(0, {str(BUILD / "python")!r})
import torch, onnx, torchrw
from torchrw import SYMBOLIC_REWRITER

@SYMBOLIC_REWRITER.register_symbolic("squeeze", is_pytorch=True)
def squeeze(g, self, dim=None):
    print("SYMBOLIC")
    return SYMBOLIC_REWRITER.get_context().origin_func(g, self, dim)

class M(torch.nn.Module):
    def forward(self, x):
        return x.squeeze(0)

def export():
    torch.onnx.export(M(), (torch.ones(1, 3),), io.BytesIO(), opset_version=11, **TS)

TRACE_ENTRY = type(torch._C._create_graph_by_tracing).__name__
HOW

gc.collect()
print("HOOK", type(torch._C._create_graph_by_tracing).__name__ == TRACE_ENTRY)
export()
with torchrw.RewriterContext(backend="ncnn"):
    print("ENTERED AGAIN")
"""

BY_HAND = """
c = torchrw.RewriterContext(backend="tensorrt")
c.__enter__()
del c
"""

RAISED = """
def block():
    c = torchrw.RewriterContext(backend="tensorrt")
    c.__enter__()
    raise ValueError("between __enter__ and the with")

try:
    block()
except ValueError:
    pass
"""


@torchscript_only("the symbolic registry of torch.onnx's TorchScript exporter")
@pytest.mark.parametrize("how", [BY_HAND, RAISED], ids=["by-hand", "exception"])
def test_a_context_collected_without_exit_gives_everything_back(tmp_path, how):
    run = run_script(tmp_path, FORGOTTEN.replace("HOW", how), preload=False).check()
    assert lines(run, "HOOK") == ["True"]
    assert "SYMBOLIC" not in run.stdout
    assert lines(run, "ENTERED") == ["AGAIN"]
    assert "collected without __exit__" in run.stderr
