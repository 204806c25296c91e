"""Python rewriters from `import torchrw`, under the preloaded library with
unchanged export scripts (issue 3).  userpkg/ is the user's own code."""
import json
import textwrap
from pathlib import Path

import numpy as np
import onnx

from conftest import BUILD, EXPORTER, ort_run, read_report, run_script, squeeze_axes, torchscript_only

HERE = Path(__file__).resolve().parent


def rewriters(tmp_path, code, name="my_rewriters.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def export(tmp_path, script, backend, rw=None, **env):
    extra = {"PYTHONPATH": f"{HERE}:{tmp_path}"}
    if rw is not None:
        extra["TORCHRW_PYTHON"] = rw
    extra.update(env)
    return run_script(tmp_path, script, backend=backend, **extra)


def lines(run, prefix):
    return [l[len(prefix):].strip() for l in run.stdout.splitlines() if l.startswith(prefix)]


# --- The three examples of the original design document ------------------

SEED_REPEAT = """
from torchrw import FUNCTION_REWRITER

@FUNCTION_REWRITER.register_rewriter(
    func_name='torch.Tensor.repeat', backend='tensorrt')
def repeat_static(input, *size):
    ctx = FUNCTION_REWRITER.get_context()
    origin_func = ctx.origin_func
    if input.dim() == 1 and len(size) == 1:
        return origin_func(input.unsqueeze(0), *([1] + list(size))).squeeze(0)
    else:
        return origin_func(input, *size)
"""

REPEAT_EXPORT = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x, y):
        return x.repeat(3) + 1, y.repeat(2, 2)
x, y = torch.arange(4.0), torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x, y), "model.onnx", opset_version=11, input_names=["x", "y"], **TS)
a, b = M()(x, y)
np.savez("io.npz", x=x.numpy(), y=y.numpy(), a=a.numpy(), b=b.numpy())
print("RESTORED", "repeat" not in torch.Tensor.__dict__)
"""


def test_seed_repeat_static(tmp_path):
    rw = rewriters(tmp_path, SEED_REPEAT)
    run = export(tmp_path, REPEAT_EXPORT, "tensorrt", rw, TORCHRW_LOG="info").check()
    ops = run.ops()
    i = ops.index("Tile")
    assert "Unsqueeze" in ops[:i] and ops[i + 1] == "Squeeze", ops
    assert lines(run, "RESTORED") == ["True"]
    # The Python rewriter outranks the built-in C one, naming both sites.
    assert ("my_rewriters.py:4 takes precedence over the built-in "
            "builtin:torch.Tensor.repeat@tensorrt registered at rewriters/repeat.c:") in run.stderr
    assert "fired torch.Tensor.repeat@tensorrt x2 (" in run.stderr
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"x": io["x"], "y": io["y"]})
    np.testing.assert_allclose(a, io["a"], rtol=1e-6)
    np.testing.assert_allclose(b, io["b"], rtol=1e-6)


SEED_SRCNN = """
import torch.nn as nn
from torchrw import MODULE_REWRITER

@MODULE_REWRITER.register_rewrite_module(
    'userpkg.models.SRCNN', backend='tensorrt')
class SRCNNWrapper(nn.Module):
    def __init__(self,
                 module,
                 cfg,
                 channels=(3, 64, 32, 3),
                 kernel_sizes=(9, 1, 5),
                 upscale_factor=4):
        super(SRCNNWrapper, self).__init__()
        self._module = module
        module.img_upsampler = nn.Upsample(
            scale_factor=module.upscale_factor,
            mode='bilinear',
            align_corners=False)

    def forward(self, *args, **kwargs):
        \"\"\"Run forward.\"\"\"
        return self._module(*args, **kwargs)

    def init_weights(self, *args, **kwargs):
        \"\"\"Initialize weights.\"\"\"
        return self._module.init_weights(*args, **kwargs)
"""

SRCNN_EXPORT = """
import numpy as np, torch
from userpkg.models import TinyNet
torch.manual_seed(0)
model = TinyNet().eval()
x = torch.rand(1, 3, 8, 8)
before = model(x)
torch.onnx.export(model, (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
after = model(x)
# What the wrapper exports: the model with a bilinear upsampler.
import copy
ref = copy.deepcopy(model)
ref.sr.img_upsampler = torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
np.savez("io.npz", x=x.numpy(), before=before.detach().numpy(), after=after.detach().numpy(),
         bilinear=ref(x).detach().numpy())
print("UPSAMPLER", model.sr.img_upsampler.mode)
print("FORWARD_RESTORED", type(model.sr).forward.__module__)
"""


def test_seed_srcnn_wrapper_makes_resize_linear(tmp_path):
    rw = rewriters(tmp_path, SEED_SRCNN)
    run = export(tmp_path, SRCNN_EXPORT, "tensorrt", rw).check()
    resize = [n for n in run.model().graph.node if n.op_type == "Resize"]
    assert len(resize) == 1
    mode = {a.name: a.s for a in resize[0].attribute}["mode"]
    assert mode == b"linear"
    # The wrapper changed the module itself; torchrw puts that back when
    # the export ends (torch.export also does, for what is assigned while
    # it captures), so the user's model computes as before the export.
    assert lines(run, "UPSAMPLER") == ["nearest"]
    assert lines(run, "FORWARD_RESTORED") == ["userpkg.models"]
    io = np.load(run.path("io.npz"))
    (y,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["bilinear"], rtol=1e-4, atol=1e-5)
    assert not np.allclose(io["before"], io["bilinear"])  # nearest vs bilinear
    np.testing.assert_array_equal(io["after"], io["before"])


MESSY_WRAPPER = """
import torch
from torchrw import MODULE_REWRITER

@MODULE_REWRITER.register_rewrite_module('userpkg.models.SRCNN', backend='tensorrt')
class Messy(torch.nn.Module):
    def __init__(self, module, cfg):
        super().__init__()
        self._module = module
        # (The TorchScript exporter refuses a state_dict that changes while
        # it traces: no parameters or buffers.)
        module.extra = torch.nn.ReLU()                 # a submodule
        module.note = "wrapped"                        # a plain attribute
        del module.upscale_factor                      # one taken away and set again
        module.upscale_factor = 2
    def forward(self, x):
        return self._module(x)
"""

MESSY_EXPORT = """
import torch
from userpkg.models import TinyNet
model = TinyNet().eval()
keys = sorted(model.state_dict())
attrs = {k: v for k, v in vars(model.sr).items() if not k.startswith("_")}
modules = dict(model.sr._modules)
torch.onnx.export(model, (torch.rand(1, 3, 8, 8),), "model.onnx", opset_version=11, **TS)
print("SAME_STATE", sorted(model.state_dict()) == keys)
now = {k: v for k, v in vars(model.sr).items() if not k.startswith("_")}
print("SAME_ATTRS", now == attrs, dict(model.sr._modules) == modules, hasattr(model.sr, "note"))
"""


def test_what_a_wrapper_changes_on_the_module_is_put_back(tmp_path):
    rw = rewriters(tmp_path, MESSY_WRAPPER)
    run = export(tmp_path, MESSY_EXPORT, "tensorrt", rw).check()
    assert lines(run, "SAME_STATE") == ["True"], run.stdout + run.stderr
    assert lines(run, "SAME_ATTRS") == ["True True False"], run.stdout + run.stderr


def test_srcnn_wrapper_does_not_fire_for_other_backends(tmp_path):
    rw = rewriters(tmp_path, SEED_SRCNN)
    run = export(tmp_path, SRCNN_EXPORT, "onnxruntime", rw).check()
    resize = [n for n in run.model().graph.node if n.op_type == "Resize"][0]
    assert {a.name: a.s for a in resize.attribute}["mode"] == b"nearest"
    assert lines(run, "UPSAMPLER") == ["nearest"]


SEED_SQUEEZE = """
from torch.onnx import symbolic_helper as sym_help
from torchrw import SYMBOLIC_REWRITER

@SYMBOLIC_REWRITER.register_symbolic('squeeze', is_pytorch=True)
def squeeze_default(g, self, dim=None):
    if dim is None:
        dims = []
        for i, size in enumerate(self.type().sizes()):
            if size == 1:
                dims.append(i)
    else:
        dims = [sym_help._get_const(dim, 'i', 'dim')]
    return g.op('Squeeze', self, axes_i=dims)
"""

SQUEEZE_EXPORT = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        return x.squeeze() * 2, x.squeeze(0)
x = torch.randn(1, 3, 1, 2, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
a, b = M()(x)
np.savez("io.npz", x=x.numpy(), a=a.numpy(), b=b.numpy())
"""


def test_seed_squeeze_symbolic_gives_static_axes(tmp_path):
    rw = rewriters(tmp_path, SEED_SQUEEZE)
    run = export(tmp_path, SQUEEZE_EXPORT, "ncnn", rw).check()
    assert squeeze_axes(run.model()) == [[0, 2], [0]]
    io = np.load(run.path("io.npz"))
    a, b = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(a, io["a"], rtol=1e-6)
    np.testing.assert_allclose(b, io["b"], rtol=1e-6)


# --- Selection -------------------------------------------------------------

SELECTION = """
from torchrw import FUNCTION_REWRITER

def tag(value):
    def rewriter(x):
        return FUNCTION_REWRITER.get_context().origin_func(x) + value
    return rewriter

FUNCTION_REWRITER.register_rewriter("userpkg.ops.decode", backend="tensorrt")(tag(100))
FUNCTION_REWRITER.register_rewriter("userpkg.ops.decode")(tag(10))
FUNCTION_REWRITER.register_rewriter("userpkg.ops.encode", backend="tensorrt")(tag(1000))
FUNCTION_REWRITER.register_rewriter("userpkg.ops.encode", backend="ncnn", ir="torchscript")(tag(7))
FUNCTION_REWRITER.register_rewriter(
    "userpkg.ops.encode", backend="openvino",
    extra_checkers=[lambda env: env["opset"] >= 13])(tag(13))
"""

SELECTION_EXPORT = """
import io, sys, torch
import userpkg.ops as ops
class M(torch.nn.Module):
    def forward(self, x):
        return ops.decode(x), ops.encode(x)
x = torch.zeros(1)
for opset in (11, 13):
    buf = io.BytesIO()
    torch.onnx.export(M(), (x,), buf, opset_version=opset, **TS)
    import onnx
    from onnx import numpy_helper
    m = onnx.load_from_string(buf.getvalue())
    tensors = list(m.graph.initializer) + [a.t for n in m.graph.node
                                           if n.op_type == "Constant" for a in n.attribute]
    consts = sorted(float(numpy_helper.to_array(t).reshape(-1)[0]) for t in tensors
                    if list(t.dims) in ([], [1]))
    print("ONNX", opset, consts)
traced = torch.jit.trace(M(), (x,))
print("TS", [float(v) for v in traced(x)])
"""


def test_backend_beats_default_and_default_serves_the_rest(tmp_path):
    rw = rewriters(tmp_path, SELECTION)
    trt = export(tmp_path, SELECTION_EXPORT, "tensorrt", rw).check()
    ort = export(tmp_path, SELECTION_EXPORT, "onnxruntime", rw).check()
    # decode: tensorrt's own (+100) under tensorrt, the default (+10) under
    # onnxruntime; encode has no default, so onnxruntime keeps torch's.
    assert "1000.0" in lines(trt, "ONNX 11")[0] and "100.0" in lines(trt, "ONNX 11")[0]
    assert lines(trt, "TS") == ["[100.0, 1000.0]"]
    assert lines(ort, "TS") == ["[10.0, 0.0]"]


def test_ir_and_extra_checkers_filter(tmp_path):
    rw = rewriters(tmp_path, SELECTION)
    ncnn = export(tmp_path, SELECTION_EXPORT, "ncnn", rw).check()
    # The ncnn encode rewriter is for torchscript only.
    assert "7.0" not in lines(ncnn, "ONNX 11")[0]
    assert lines(ncnn, "TS") == ["[10.0, 7.0]"]
    ov = export(tmp_path, SELECTION_EXPORT, "openvino", rw).check()
    assert "13.0" not in lines(ov, "ONNX 11")[0]
    assert "13.0" in lines(ov, "ONNX 13")[0]


# --- Targets: aliases, two names, derived classes, restore -----------------

TARGETS = """
from torchrw import FUNCTION_REWRITER

@FUNCTION_REWRITER.register_rewriter("userpkg.ops.decode")
def decode(x):
    return FUNCTION_REWRITER.get_context().origin_func(x) * 10

@FUNCTION_REWRITER.register_rewriter("userpkg.Scaler.gain")
def gain(self):
    ctx = FUNCTION_REWRITER.get_context()
    return ctx.origin_func(self) + float(ctx.cfg.onnx_config.extra_gain)

@FUNCTION_REWRITER.register_rewriter("userpkg.models.Derived.scale")
def scale(self, x):
    return FUNCTION_REWRITER.get_context().origin_func(self, x) - 1
"""

TARGETS_EXPORT = """
import io, torch
import userpkg, userpkg.ops, userpkg.head
from userpkg.models import Base, Derived, Scaler

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head, self.base, self.derived = userpkg.head.Head(), Base(), Derived()
        self.scaler = Scaler()
    def forward(self, x):
        return self.head(x), self.base(x), self.derived(x), self.scaler(x)

x = torch.ones(1)
traced = torch.jit.trace(M(), (x,))
print("TRACED", [float(v) for v in traced(x)])
print("EAGER", [float(v) for v in M()(x)])
print("ALIAS_RESTORED", userpkg.head.decode_boxes is userpkg.ops.decode)
print("DERIVED_INHERITS", "scale" not in Derived.__dict__ and Derived.scale is Base.scale)
"""


def test_alias_two_names_and_derived_method(tmp_path):
    rw = rewriters(tmp_path, TARGETS)
    cfg = tmp_path / "deploy.json"
    cfg.write_text(json.dumps({"onnx_config": {"extra_gain": 2}}))
    run = export(tmp_path, TARGETS_EXPORT, "tensorrt", rw, TORCHRW_CONFIG=cfg).check()
    # head: decode alias rewritten (2*10)+1; base untouched 3; derived 3-1;
    # scaler via the other name userpkg.Scaler: 5+2.
    assert lines(run, "TRACED") == ["[21.0, 3.0, 2.0, 7.0]"]
    assert lines(run, "EAGER") == ["[3.0, 3.0, 3.0, 5.0]"]
    assert lines(run, "ALIAS_RESTORED") == ["True"]
    assert lines(run, "DERIVED_INHERITS") == ["True"]


def test_restore_after_a_failing_export(tmp_path):
    rw = rewriters(tmp_path, TARGETS + SEED_REPEAT)
    script = """
import torch, userpkg.ops, userpkg.head
from userpkg.models import Derived
class Bad(torch.nn.Module):
    def forward(self, x):
        userpkg.head.decode_boxes(x)
        raise ValueError("model bug")
try:
    torch.onnx.export(Bad(), (torch.ones(2),), "bad.onnx", **TS)
except Exception as e:
    while e.__cause__ is not None:  # torch.export's exporter wraps it
        e = e.__cause__
    print("RAISED", e)
print("RESTORED", "repeat" not in torch.Tensor.__dict__,
      userpkg.head.decode_boxes is userpkg.ops.decode,
      userpkg.ops.decode.__module__ == "userpkg.ops",
      "scale" not in Derived.__dict__)
print("EAGER", userpkg.ops.decode(torch.ones(1)).item(), torch.arange(2.0).repeat(2).tolist())
"""
    run = export(tmp_path, script, "tensorrt", rw).check()
    assert lines(run, "RAISED") == ["model bug"]
    assert lines(run, "RESTORED") == ["True True True True"]
    assert lines(run, "EAGER") == ["2.0 [0.0, 1.0, 0.0, 1.0]"]


def test_get_context_by_name_when_one_function_serves_two(tmp_path):
    rw = rewriters(tmp_path, """
from torchrw import FUNCTION_REWRITER

@FUNCTION_REWRITER.register_rewriter("userpkg.ops.decode")
@FUNCTION_REWRITER.register_rewriter("userpkg.ops.encode")
def both(x):
    ctx = FUNCTION_REWRITER.get_context()
    assert FUNCTION_REWRITER.get_context(ctx.target) is ctx
    print("CTX", ctx.target, ctx.name, ctx.backend, ctx.ir, ctx.opset)
    return ctx.origin_func(x)
""")
    script = """
import io, torch, userpkg.ops as ops
class M(torch.nn.Module):
    def forward(self, x):
        return ops.decode(x), ops.encode(x)
torch.onnx.export(M(), (torch.ones(1),), io.BytesIO(), opset_version=12, **TS)
"""
    run = export(tmp_path, script, "ncnn", rw).check()
    assert lines(run, "CTX") == ["userpkg.ops.decode userpkg.ops.decode@default ncnn onnx 12",
                                 "userpkg.ops.encode userpkg.ops.encode@default ncnn onnx 12"]


def test_names_that_do_not_import_are_reported_not_found(tmp_path):
    rw = rewriters(tmp_path, """
from torchrw import FUNCTION_REWRITER
@FUNCTION_REWRITER.register_rewriter("nosuchpkg.mod.func", backend="tensorrt")
def f(x):
    return x
""")
    report = tmp_path / "report.json"
    run = export(tmp_path, REPEAT_EXPORT, "tensorrt", rw, TORCHRW_REPORT=report).check()
    assert "nosuchpkg" not in run.stderr  # not an error, not a warning
    trace = read_report(report)[0]
    assert "nosuchpkg.mod.func@tensorrt" in trace["not_found"]


def test_import_error_in_rewriter_module_fails_the_export_with_traceback(tmp_path):
    rw = rewriters(tmp_path, "import torch\nraise ImportError('broken rewriters')\n")
    run = export(tmp_path, REPEAT_EXPORT, "tensorrt", rw)
    assert run.returncode != 0
    assert "cannot import rewriter module" in run.stderr
    assert "my_rewriters.py\", line 2" in run.stderr
    assert "ImportError: broken rewriters" in run.stderr


def test_bad_backend_in_python_registration_is_named(tmp_path):
    rw = rewriters(tmp_path, """
from torchrw import FUNCTION_REWRITER
@FUNCTION_REWRITER.register_rewriter("torch.topk", backend="tensorrtx")
def f(*a):
    pass
""")
    run = export(tmp_path, REPEAT_EXPORT, "tensorrt", rw)
    assert run.returncode != 0
    assert "my_rewriters.py:3: rewriter 'torch.topk' names unknown backend 'tensorrtx'" in run.stderr


# --- Module rewriters with keyword arguments ----------------------------------

def test_module_wrapper_keyword_arguments(tmp_path):
    rw = rewriters(tmp_path, """
import torch.nn as nn
from torchrw import MODULE_REWRITER

@MODULE_REWRITER.register_rewrite_module("userpkg.models.Base", backend="tensorrt",
                                         factor=4, unused=123)
class BaseWrapper(nn.Module):
    def __init__(self, module, cfg, factor=1):
        super().__init__()
        self.module, self.factor = module, factor
    def forward(self, x):
        return self.module(x) * self.factor

@MODULE_REWRITER.register_rewrite_module("userpkg.models.Scaler", backend="tensorrt")
class NeedsArg(nn.Module):
    def __init__(self, module, cfg, required):
        super().__init__()
""")
    script = """
import torch
from userpkg.models import Base, Derived, Scaler
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = Base(), Derived()
    def forward(self, x):
        return self.a(x), self.b(x)
traced = torch.jit.trace(M(), (torch.ones(1),))
print("WRAPPED", [float(v) for v in traced(torch.ones(1))])
try:
    torch.jit.trace(Scaler(), (torch.ones(1),))
except Exception as e:
    print("ERROR", e)
"""
    run = export(tmp_path, script, "tensorrt", rw).check()
    # Derived is a subclass of Base: wrapped too.  `unused` was dropped.
    assert lines(run, "WRAPPED") == ["[12.0, 12.0]"]
    err = lines(run, "ERROR")[0]
    assert "NeedsArg" in err and "'required'" in err and "my_rewriters.py:" in err


# --- Symbolics of custom autograd Functions, arg_descriptors -------------------

CLAMP_SYMBOLICS = """
from torchrw import SYMBOLIC_REWRITER

@SYMBOLIC_REWRITER.register_symbolic("userpkg.ops.MyClamp", backend="tensorrt")
def clamp_trt(g, x, lo, hi):
    return g.op("Relu", x)

@SYMBOLIC_REWRITER.register_symbolic("userpkg.ops.MyClamp")
def clamp_default(g, x, lo, hi):
    # The symbolic the Function had, then a Neg to show we were here.
    return g.op("Neg", SYMBOLIC_REWRITER.get_context().origin_func(g, x, lo, hi))
"""

CLAMP_EXPORT = """
import torch, onnx
from userpkg.models import Clamped
torch.onnx.export(Clamped(), (torch.randn(4),), "model.onnx", opset_version=11, **TS)
print("OPS", [n.op_type for n in onnx.load("model.onnx").graph.node])
"""


def test_autograd_function_symbolic_per_backend(tmp_path):
    rw = rewriters(tmp_path, CLAMP_SYMBOLICS)
    trt = export(tmp_path, CLAMP_EXPORT, "tensorrt", rw).check()
    assert "'Relu'" in lines(trt, "OPS")[0] and "Clip" not in lines(trt, "OPS")[0]
    ort = export(tmp_path, CLAMP_EXPORT, "onnxruntime", rw).check()
    assert "'Clip'" in lines(ort, "OPS")[0] and "'Neg'" in lines(ort, "OPS")[0]
    plain = export(tmp_path, CLAMP_EXPORT, "onnxruntime").check()
    assert "Neg" not in lines(plain, "OPS")[0]


def test_arg_descriptors_parse_inputs(tmp_path):
    rw = rewriters(tmp_path, """
from torchrw import SYMBOLIC_REWRITER

@SYMBOLIC_REWRITER.register_symbolic("leaky_relu", is_pytorch=True,
                                     arg_descriptors=["v", "f", "b"])
def leaky(g, x, slope, inplace=False):
    assert isinstance(slope, float) and isinstance(inplace, bool)
    return g.op("LeakyRelu", x, alpha_f=slope * 2)
""")
    script = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.leaky_relu(x, 0.1)
x = torch.randn(5, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=13, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy())
"""
    run = export(tmp_path, script, "openvino", rw).check()
    (node,) = [n for n in run.model().graph.node if n.op_type == "LeakyRelu"]
    assert abs(node.attribute[0].f - 0.2) < 1e-6
    x = np.load(run.path("io.npz"))["x"]
    (y,) = ort_run(run.path("model.onnx"), {"x": x})
    np.testing.assert_allclose(y, np.where(x > 0, x, 0.2 * x), rtol=1e-6)


@torchscript_only("torch.onnx's TorchScript symbolics by opset; test_torch_export.py "
                  "has the exporter's own translation as origin_func")
def test_symbolic_origin_func_is_torchs_own(tmp_path):
    rw = rewriters(tmp_path, """
from torchrw import SYMBOLIC_REWRITER

@SYMBOLIC_REWRITER.register_symbolic("aten::squeeze", is_pytorch=True)
def squeeze(g, x, dim=None):
    ctx = SYMBOLIC_REWRITER.get_context()
    # torch 2.9 moved its symbolics to torch.onnx._internal.torchscript_exporter.
    print("ORIGIN", ctx.origin_func.__module__.rsplit(".", 1)[-1], ctx.opset)
    return ctx.origin_func(g, g.op("Abs", x), dim)
""")
    script = """
import io, torch, onnx
class M(torch.nn.Module):
    def forward(self, x):
        return x.squeeze(1)
for opset in (9, 11, 13):
    buf = io.BytesIO()
    torch.onnx.export(M(), (torch.randn(3, 1),), buf, opset_version=opset, **TS)
    print("OPS", [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node])
"""
    run = export(tmp_path, script, "tensorrt", rw).check()
    assert lines(run, "ORIGIN") == ["symbolic_opset9 9", "symbolic_opset11 11",
                                    "symbolic_opset11 13"]  # torch has none at 13
    assert all("'Abs'" in l and "'Squeeze'" in l for l in lines(run, "OPS"))


def test_torch_symbolics_are_back_after_a_rewriter_context(tmp_path):
    # No preload: explicit RewriterContext in a plain interpreter.
    script = f"""
import io, sys
sys.path.insert(0, {str(BUILD / "python")!r})
import torch, onnx, torchrw
from torchrw import SYMBOLIC_REWRITER

@SYMBOLIC_REWRITER.register_symbolic("squeeze", is_pytorch=True)
def squeeze_abs(g, x, dim=None):
    return g.op("Abs", x)

class M(torch.nn.Module):
    def forward(self, x):
        return x.squeeze(1)

def ops():
    buf = io.BytesIO()
    torch.onnx.export(M(), (torch.randn(3, 1),), buf, opset_version=13, **TS)
    return [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]

with torchrw.RewriterContext(backend="tensorrt"):
    print("INSIDE", ops())
print("AFTER", ops())
"""
    run = run_script(tmp_path, script, preload=False).check()
    assert lines(run, "INSIDE") == ["['Abs']"]
    assert "Squeeze" in lines(run, "AFTER")[0] and "Abs" not in lines(run, "AFTER")[0]


def test_import_torchrw_in_the_export_script_of_a_preloaded_process(tmp_path):
    # No PYTHONPATH: the preloaded library offers its Python module to
    # Python processes when TORCHRW_BACKEND is set.
    script = """
import io, os, torch, onnx
import torchrw
from torchrw import FUNCTION_REWRITER

@FUNCTION_REWRITER.register_rewriter("torch.nn.functional.relu", backend="tensorrt")
def relu6(x, inplace=False):
    return torch.clamp(x, 0, 6)

buf = io.BytesIO()
torch.onnx.export(torch.nn.ReLU(), (torch.randn(3),), buf, opset_version=11, **TS)
print("OPS", [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node])
"""
    run = run_script(tmp_path, script, backend="tensorrt", PYTHONPATH="").check()
    assert "'Clip'" in lines(run, "OPS")[0] and "Relu" not in lines(run, "OPS")[0]


def test_patches_rewrite_only_on_threads_that_trace(tmp_path):
    rw = rewriters(tmp_path, TARGETS)
    script = """
import threading, torch
import userpkg.ops as ops
started, eager_done = threading.Event(), threading.Event()
results = {}

class Waits(torch.nn.Module):
    def forward(self, x):
        started.set()
        eager_done.wait(30)
        return ops.decode(x)

def trace():
    traced = torch.jit.trace(Waits(), (torch.ones(1),))
    results["traced"] = float(traced(torch.ones(1)))

t = threading.Thread(target=trace)
t.start()
started.wait(30)
# The trace on the other thread has patched userpkg.ops.decode by now: the
# module's dict holds the patch, and this thread sees the original.
results["patched_meanwhile"] = type(vars(ops)["decode"]).__name__
results["seen_meanwhile"] = ops.decode.__class__.__name__
results["eager"] = float(ops.decode(torch.ones(1)))
eager_done.set()
t.join()
print("RESULTS", results["patched_meanwhile"], results["seen_meanwhile"], results["eager"],
      results["traced"])
print("RESTORED", ops.decode.__class__.__name__)
"""
    run = export(tmp_path, script, "tensorrt", rw).check()
    assert lines(run, "RESULTS") == ["PatchedFunction function 2.0 20.0"]
    assert lines(run, "RESTORED") == ["function"]


RAISING = """
from torchrw import FUNCTION_REWRITER, MODULE_REWRITER, SYMBOLIC_REWRITER
import torch

@FUNCTION_REWRITER.register_rewriter("torch.nn.functional.relu", backend="tensorrt")
def bad_relu(x, inplace=False):
    raise ValueError("relu went wrong")

@FUNCTION_REWRITER.register_rewriter("torch.sigmoid", backend="tensorrt")
def interrupted(x):
    raise KeyboardInterrupt
"""

RAISING_EXPORT = """
import io, traceback, torch, torchrw
class Relu(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.relu(x)
class Sigmoid(torch.nn.Module):
    def forward(self, x):
        return torch.sigmoid(x)
try:
    torch.onnx.export(Relu(), (torch.ones(2),), io.BytesIO(), **TS)
except Exception as e:
    while not isinstance(e, torchrw.RewriterError) and e.__cause__ is not None:
        e = e.__cause__  # torch.export's exporter wraps it
    print("RAISED", type(e).__name__, e)
    print("CAUSE", type(e.__cause__).__name__)
    print("ORIGINAL_LINE", any("relu went wrong" in l for l in traceback.format_exception(e)))
try:
    torch.onnx.export(Sigmoid(), (torch.ones(2),), io.BytesIO(), **TS)
except KeyboardInterrupt:
    print("INTERRUPT passes unchanged")
print("RESTORED", torch.nn.functional.relu.__module__)
"""


def test_a_rewriters_exception_names_it_and_chains_the_original(tmp_path):
    rw = rewriters(tmp_path, RAISING)
    run = export(tmp_path, RAISING_EXPORT, "tensorrt", rw).check()
    raised = lines(run, "RAISED")
    assert raised == [f"RewriterError torchrw: rewriter torch.nn.functional.relu@tensorrt "
                      f"({rw}:5) raised ValueError: relu went wrong"], run.stdout
    assert lines(run, "CAUSE") == ["ValueError"]
    assert lines(run, "ORIGINAL_LINE") == ["True"]
    assert lines(run, "INTERRUPT") == ["passes unchanged"]
    assert lines(run, "RESTORED") == ["torch.nn.functional"]


# --- An explicit registration site ---------------------------------------------

def test_registration_site_given_explicitly(tmp_path):
    # Code that registers on behalf of another file (torchrw.mmdeploy) names
    # that file's line; listings, reports and errors then point there.
    script = """
import json, torch, torchrw
from torchrw import FUNCTION_REWRITER, SYMBOLIC_REWRITER

def repeat_twice(input, *size):
    return FUNCTION_REWRITER.get_context().origin_func(input, *size)

FUNCTION_REWRITER.register_rewriter("torch.Tensor.repeat", backend="tensorrt")(
    repeat_twice, site=("/elsewhere/their_rewriters.py", 42))
SYMBOLIC_REWRITER.register_symbolic("squeeze", is_pytorch=True)(lambda g, x, dim=None: x)
for bad in [("f.py",), ("f.py", -1), (3, 4), ("f.py", "4"), "f.py:4"]:
    try:
        FUNCTION_REWRITER.register_rewriter("torch.topk")(repeat_twice, site=bad)
        print("ACCEPTED", bad)
    except TypeError as e:
        print("REFUSED", e)
try:
    FUNCTION_REWRITER.register_rewriter("torch.topk")(repeat_twice, where=("f.py", 1))
except TypeError as e:
    print("REFUSED", e)
sites = {r["stable"]: (r["file"], r["line"]) for r in torchrw.rewriters()}
print("SITE", json.dumps(sites["torch.Tensor.repeat@tensorrt"]))
print("SITE", json.dumps(sites["squeeze@default"]))
print("TOPK", "torch.topk@default" in sites and sites["torch.topk@default"][0] == "f.py")
# The module stands for the torchrw package: its submodules import.
print("PATH", [p.endswith("torchrw") for p in torchrw.__path__])
"""
    run = export(tmp_path, script, "tensorrt").check()
    assert lines(run, "SITE") == ['["/elsewhere/their_rewriters.py", 42]',
                                  f'["{tmp_path / "export.py"}", 10]']
    refused = lines(run, "REFUSED")
    assert len(refused) == 6, run.stdout
    for bad, message in zip(["('f.py',)", "('f.py', -1)", "(3, 4)", "('f.py', '4')",
                             "'f.py:4'"], refused):
        assert message == (f"torchrw: site={bad}: expected (file, line), "
                           "a str and an int >= 0"), message
    assert "where" in refused[5]
    assert lines(run, "TOPK") == ["False"]
    assert lines(run, "PATH") == ["[True]"]
