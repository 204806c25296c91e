"""Rewriters whose target's module is not imported: torchrw never imports
it, and applies the rewriter when the module is imported, also during the
export (issue 10, start-up and import side effects)."""
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import BUILD, ort_run, read_report, run_script

HERE = Path(__file__).resolve().parent

LATE_MODULES = {
    "late_ops.py": """
        def scale(x):
            return x * 2
    """,
    "late_nn.py": """
        import torch
        class Block(torch.nn.Module):
            def forward(self, x):
                return x + 1
    """,
    "late_fn.py": """
        import torch
        class Clamp(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clamp(0, 1)
            @staticmethod
            def symbolic(g, x):
                return g.op("Clip", x, g.op("Constant", value_t=torch.tensor(0.0)),
                            g.op("Constant", value_t=torch.tensor(1.0)))
    """,
}

REWRITERS = """
import torch
from torchrw import FUNCTION_REWRITER, MODULE_REWRITER, SYMBOLIC_REWRITER

@FUNCTION_REWRITER.register_rewriter("late_ops.scale", backend="tensorrt")
def scale(x):
    return FUNCTION_REWRITER.get_context().origin_func(x) * 5

@MODULE_REWRITER.register_rewrite_module("late_nn.Block", backend="tensorrt")
class Wrap(torch.nn.Module):
    def __init__(self, module, cfg):
        super().__init__()
        self.module = module
    def forward(self, x):
        return self.module(x) * 10

@SYMBOLIC_REWRITER.register_symbolic("late_fn.Clamp", backend="tensorrt")
def clamp(g, x):
    return g.op("Neg", SYMBOLIC_REWRITER.get_context().origin_func(g, x))

@FUNCTION_REWRITER.register_rewriter("never_imported_pkg.mod.func", backend="tensorrt")
def never(x):
    return x
"""

# The model imports the three modules only while it is traced.
EXPORT = """
import json, sys, numpy as np, torch

class M(torch.nn.Module):
    def forward(self, x):
        import late_ops, late_nn, late_fn
        return late_fn.Clamp.apply(late_nn.Block()(late_ops.scale(x)))

x = torch.linspace(-1, 1, 8)
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
import late_ops
print("RESTORED", late_ops.scale(torch.ones(1)).item())
print("MODULES", json.dumps(sorted(m for m in ("torchvision", "never_imported_pkg")
                                   if m in sys.modules)))
np.savez("io.npz", x=x.numpy())
"""


def write(tmp_path):
    for name, code in LATE_MODULES.items():
        (tmp_path / name).write_text(textwrap.dedent(code))
    (tmp_path / "rw.py").write_text(REWRITERS)


def test_targets_imported_during_the_export_are_rewritten(tmp_path):
    write(tmp_path)
    run = run_script(tmp_path, EXPORT, backend="tensorrt", PYTHONPATH=tmp_path,
                     TORCHRW_PYTHON="rw", TORCHRW_REPORT=tmp_path / "r.json").check()
    ops = run.ops()
    # Module rewriter: *10; function rewriter: *5; symbolic: Neg after Clip.
    assert ops[-2:] == ["Clip", "Neg"], ops
    x = np.load(run.path("io.npz"))["x"]
    (y,) = ort_run(run.path("model.onnx"), {"x": x})
    np.testing.assert_allclose(y, -np.clip((x * 2 * 5 + 1) * 10, 0, 1), rtol=1e-6)
    out = run.stdout.splitlines()
    assert "RESTORED 2.0" in out  # the original is back after the export
    # Neither the built-in FrozenBatchNorm2d rewriter (torchvision) nor a
    # rewriter of a module nobody imports imported its module.
    assert 'MODULES []' in out
    report = read_report(run.path("r.json"))
    fired = {f["name"] for t in report for f in t["fired"]}
    assert {"late_ops.scale@tensorrt", "late_nn.Block@tensorrt", "late_fn.Clamp@tensorrt"} <= fired
    missing = {k: v for t in report for k, v in t["not_found"].items()}
    assert "module 'never_imported_pkg' is not imported" in \
        missing["never_imported_pkg.mod.func@tensorrt"]


def test_without_torchrw_the_same_export_is_plain(tmp_path):
    write(tmp_path)
    run = run_script(tmp_path, EXPORT, preload=False, PYTHONPATH=tmp_path).check()
    assert run.ops()[-1] == "Clip"
    x = np.load(run.path("io.npz"))["x"]
    (y,) = ort_run(run.path("model.onnx"), {"x": x})
    np.testing.assert_allclose(y, np.clip(x * 2 + 1, 0, 1), rtol=1e-6)


# --------------------------------------------------------------------------
# What the process imports: nothing more than without torchrw.

# A package whose submodule is imported by its module __getattr__ (PEP 562),
# as torch 2.x does for torch.onnx, torch._dynamo, torch._inductor.
LAZYPKG = {
    "lazypkg/__init__.py": """
        import importlib
        def __getattr__(name):
            if name == "sub":
                return importlib.import_module(".sub", __name__)
            raise AttributeError(name)
    """,
    "lazypkg/sub.py": """
        def double(x):
            return x * 2
    """,
}

LAZY_REWRITERS = """
from torchrw import FUNCTION_REWRITER

@FUNCTION_REWRITER.register_rewriter("lazypkg.sub.double", backend="tensorrt")
def double(x):
    return FUNCTION_REWRITER.get_context().origin_func(x) * 5
"""

# A target behind a module __getattr__ (lazypkg.sub), one under torch.onnx
# (not imported by `import torch` on torch 2.x) and a symbolic with
# arg_descriptors (torch.onnx's parse_args).
IMPORT_REWRITERS = LAZY_REWRITERS + """
from torchrw import SYMBOLIC_REWRITER

@FUNCTION_REWRITER.register_rewriter("torch.onnx.utils.no_such_function", backend="tensorrt")
def nothing(x):
    return x

@SYMBOLIC_REWRITER.register_symbolic("squeeze", backend="tensorrt", is_pytorch=True,
                                     arg_descriptors=["v", "i"])
def squeeze(g, x, dim):
    return SYMBOLIC_REWRITER.get_context().origin_func(g, x, dim)
"""

MODULES_EXPORT = """
import json, sys, torch
import lazypkg
class M(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x).squeeze(0) + 1
def export():
    if ENTRY == "onnx":
        torch.onnx.export(M(), (torch.ones(1, 3),), "model.onnx", opset_version=11, **TS)
    else:
        torch.jit.trace(M(), (torch.ones(1, 3),))
if CONTEXT:
    import torchrw, rw
    with torchrw.RewriterContext(backend="tensorrt"):
        export()
else:
    export()
json.dump(sorted(sys.modules), open("modules.json", "w"))
"""


def write_lazypkg(tmp_path):
    for name, code in LAZYPKG.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(code))


@pytest.mark.parametrize("mode", ["preload", "context"])
@pytest.mark.parametrize("entry", ["onnx", "jit"])
def test_torchrw_imports_nothing_the_script_does_not(tmp_path, entry, mode):
    # The built-in rewriters target torchvision (FrozenBatchNorm2d) and
    # torch.onnx's modules, the user's rewriters modules of their own: a
    # script that imports none of them keeps them out.
    modules = {}
    for side in ("with", "without"):
        d = tmp_path / side
        d.mkdir()
        write_lazypkg(d)
        (d / "rw.py").write_text(IMPORT_REWRITERS)
        context = side == "with" and mode == "context"
        code = f"\nENTRY, CONTEXT = {entry!r}, {context}" + MODULES_EXPORT
        if side == "without":
            run = run_script(d, code, preload=False, PYTHONPATH=d)
        elif context:
            run = run_script(d, code, preload=False, PYTHONPATH=f"{BUILD / 'python'}:{d}")
        else:
            run = run_script(d, code, backend="tensorrt", PYTHONPATH=d, TORCHRW_PYTHON="rw")
        modules[side] = set(json.loads(run.check().path("modules.json").read_text()))
    assert "torchvision" not in modules["with"]
    extra = {m for m in modules["with"] - modules["without"]
             if m.split(".")[0] not in ("torchrw", "rw")}
    assert extra == set()
    assert "rw" in modules["with"]


LAZY_EXPORT = """
import sys, numpy as np, torch
import lazypkg
class Plain(torch.nn.Module):
    def forward(self, x):
        return x + 1
class UsesSub(torch.nn.Module):
    def forward(self, x):
        return lazypkg.sub.double(x) + 1  # imports lazypkg.sub during the export
x = torch.linspace(-1, 1, 8)
torch.onnx.export(Plain(), (x,), "plain.onnx", opset_version=11, **TS)
print("AFTER_PLAIN", "lazypkg.sub" in sys.modules)
torch.onnx.export(UsesSub(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
print("RESTORED", lazypkg.sub.double(torch.ones(1)).item())
np.savez("io.npz", x=x.numpy())
"""


def test_a_module_getattr_is_not_asked_for_a_target(tmp_path):
    write_lazypkg(tmp_path)
    (tmp_path / "rw.py").write_text(LAZY_REWRITERS)
    run = run_script(tmp_path, LAZY_EXPORT, backend="tensorrt", PYTHONPATH=tmp_path,
                     TORCHRW_PYTHON="rw").check()
    out = run.stdout.splitlines()
    assert "AFTER_PLAIN False" in out  # torchrw did not call lazypkg.__getattr__
    assert "RESTORED 2.0" in out
    x = np.load(run.path("io.npz"))["x"]
    (y,) = ort_run(run.path("model.onnx"), {"x": x})
    np.testing.assert_allclose(y, x * 2 * 5 + 1, rtol=1e-6)


# torchvision imported only while the model runs: the built-in C module
# rewriter of FrozenBatchNorm2d applies all the same.  torch's TorchScript
# tracer cannot run torchvision's import itself (it calls an operator that
# returns an int: "unsupported output type: int, from operator:
# torchvision::_cuda_version", with or without torchrw), so the model
# imports it with the tracer paused, as torch.export's capture needs not.
LATE_TORCHVISION = """
import importlib, sys, numpy as np, torch
torch.manual_seed(0)
def import_untraced(name):
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        return importlib.import_module(name)
    finally:
        torch._C._set_tracing_state(state)
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, bias=False)
        for name in ("w", "b", "mean"):
            self.register_buffer(name, torch.rand(8) * 2 - 1)
        self.register_buffer("var", torch.rand(8) + 0.5)
    def forward(self, x):
        bn = import_untraced("torchvision.ops.misc").FrozenBatchNorm2d(8)
        bn.weight, bn.bias, bn.running_mean, bn.running_var = self.w, self.b, self.mean, self.var
        return torch.relu(bn(self.conv(x)))
print("BEFORE", "torchvision" in sys.modules)
m = Net().eval()
x = torch.randn(2, 3, 10, 10)
torch.onnx.export(m, (x,), "model.onnx", opset_version=17, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), y=m(x).detach().numpy())
"""


def test_frozen_batch_norm_when_torchvision_is_imported_during_the_export(tmp_path):
    run = run_script(tmp_path, LATE_TORCHVISION, backend="tensorrt", TORCHRW_LOG="info").check()
    assert "BEFORE False" in run.stdout.splitlines()
    assert "fired builtin:torchvision.ops.misc.FrozenBatchNorm2d@tensorrt x1 (rewriters/frozen_bn.c:" \
        in run.stderr
    ops = run.ops()
    assert "Mul" not in ops and "Relu" in ops, ops  # folded, not spelled out
    io = np.load(run.path("io.npz"))
    (y,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5)


# The user's own package, imported while the model runs: its function is
# rewritten, and the name another of its modules imports it under is the
# original again after the export.
LATE_USERPKG_REWRITERS = """
from torchrw import FUNCTION_REWRITER

@FUNCTION_REWRITER.register_rewriter("userpkg.ops.decode", backend="tensorrt")
def decode(x):
    return FUNCTION_REWRITER.get_context().origin_func(x) + 100
"""

LATE_USERPKG_EXPORT = """
import sys, numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        import userpkg.head
        return userpkg.head.Head()(x)
x = torch.linspace(-1, 1, 8)
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
import userpkg.head, userpkg.ops
print("ALIAS_RESTORED", userpkg.head.decode_boxes is userpkg.ops.decode)
print("EAGER", M()(torch.ones(1)).item())
np.savez("io.npz", x=x.numpy())
"""


def test_a_user_package_imported_during_the_export(tmp_path):
    (tmp_path / "rw.py").write_text(LATE_USERPKG_REWRITERS)
    run = run_script(tmp_path, LATE_USERPKG_EXPORT, backend="tensorrt",
                     PYTHONPATH=f"{HERE}:{tmp_path}", TORCHRW_PYTHON="rw").check()
    out = run.stdout.splitlines()
    assert "ALIAS_RESTORED True" in out
    assert "EAGER 3.0" in out
    x = np.load(run.path("io.npz"))["x"]
    (y,) = ort_run(run.path("model.onnx"), {"x": x})
    np.testing.assert_allclose(y, x * 2 + 100 + 1, rtol=1e-6)
