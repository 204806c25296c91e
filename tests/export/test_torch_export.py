"""torch.export (issue 9): torch.onnx.export(..., dynamo=True), the default
from torch 2.9, and torch.export.export itself.  These scripts ask for that
exporter explicitly, so they run in every leg whose torch has it; the whole
suite also runs with it as the default (TORCHRW_TEST_EXPORTER=torch.export).

How each kind of rewriter gets there (docs/torch-export.md):
Python function and module rewriters while torch.export captures the model,
C operator rewriters while ExportedProgram.run_decompositions lowers it,
symbolic rewriters as entries of the exporter's custom_translation_table."""
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import BUILD, PLUGINS, TORCH, ort_run, read_report, run_script

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(TORCH < (2, 9), reason="torch.export's ONNX exporter: torch 2.9+")

REPEAT = """
import json, numpy as np, torch
class Tiler(torch.nn.Module):
    def forward(self, x, y):
        return x.repeat(3) * 2, y.repeat(2, 1)
model = Tiler().eval()
x = torch.arange(5, dtype=torch.float32) - 2
y = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
torch.onnx.export(model, (x, y), "model.onnx", input_names=["x", "y"], dynamo=True)
a, b = model(x, y)
np.savez("io.npz", x=x.numpy(), y=y.numpy(), a=a.numpy(), b=b.numpy())
print("EAGER", torch.arange(2.0).repeat(2).tolist())
"""


def _numerics(run, names=("x", "y"), outs=("a", "b"), rtol=1e-6):
    io = np.load(run.path("io.npz"))
    got = ort_run(run.path("model.onnx"), {n: io[n] for n in names})
    for name, value in zip(outs, got):
        np.testing.assert_allclose(value, io[name], rtol=rtol, err_msg=name)


def test_seed_repeat_in_c_under_the_default_exporter(tmp_path):
    report = tmp_path / "report.json"
    run = run_script(tmp_path, REPEAT, backend="tensorrt", TORCHRW_REPORT=report,
                     TORCHRW_LOG="info", TORCHRW_TRACE=tmp_path / "trace.txt").check()
    ops = run.ops()
    i = ops.index("Tile")
    assert "Unsqueeze" in ops[:i] and ops[i + 1] == "Squeeze", ops
    _numerics(run)
    (trace,) = read_report(report)
    assert trace["exporter"] == "torch.export"
    # Once per call the model makes (torch lowers the program in passes;
    # only the one that makes the graph counts).
    # (The 2-D repeat only ran the original: it passed through, not fired.)
    assert {f["name"]: f["count"] for f in trace["fired"]}["builtin:torch.Tensor.repeat@tensorrt"] == 1
    # --trace names the model's line, not torch's generated graph code.
    lines = (tmp_path / "trace.txt").read_text().splitlines()
    repeat = [l for l in lines if l.startswith("torchrw trace: aten::repeat(")]
    assert len(repeat) == 2 and all("export.py:5 ->" in l for l in repeat), lines
    assert "EAGER [0.0, 1.0, 0.0, 1.0]" in run.stdout


def test_disable_and_other_backends(tmp_path):
    off = run_script(tmp_path, REPEAT, backend="tensorrt",
                     TORCHRW_DISABLE="builtin:torch.Tensor.repeat@tensorrt").check()
    assert "Squeeze" not in off.ops() and "Tile" in off.ops()
    (tmp_path / "ort").mkdir()
    ort = run_script(tmp_path / "ort", REPEAT, backend="onnxruntime").check()
    assert "Squeeze" not in ort.ops()
    _numerics(ort)


PY_REWRITERS = """
import torch.nn as nn
from torchrw import FUNCTION_REWRITER, MODULE_REWRITER, SYMBOLIC_REWRITER

@FUNCTION_REWRITER.register_rewriter("userpkg.ops.decode", backend="tensorrt")
def decode(x):
    ctx = FUNCTION_REWRITER.get_context()
    print("CTX", ctx.exporter, ctx.backend, ctx.cfg.get("tag"))
    return ctx.origin_func(x) * 10

@MODULE_REWRITER.register_rewrite_module("userpkg.models.Scaler", backend="default")
class ScalerWrapper(nn.Module):
    def __init__(self, module, cfg, **kwargs):
        super().__init__()
        self._module = module
    def forward(self, x):
        return self._module(x) + 1

@SYMBOLIC_REWRITER.register_symbolic("userpkg.ops.MyClamp", backend="tensorrt")
def clamp(g, x, lo, hi):
    ctx = SYMBOLIC_REWRITER.get_context()
    print("FN_ORIGIN", ctx.origin_func.__qualname__, lo, hi)
    return g.op("Neg", ctx.origin_func(g, x, lo, hi))

@SYMBOLIC_REWRITER.register_symbolic("aten::squeeze", backend="tensorrt", is_pytorch=True)
def squeeze(g, x, dim=None):
    ctx = SYMBOLIC_REWRITER.get_context()
    print("SQ_ORIGIN", ctx.exporter, ctx.opset, ctx.origin_func is not None)
    return ctx.origin_func(g, g.op("Abs", x), dim)
"""

PY_EXPORT = """
import json, numpy as np, torch
import userpkg.ops as ops
from userpkg.models import Scaler
apply_before = ops.MyClamp.__dict__.get("apply")
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scaler = Scaler()
    def forward(self, x):
        y = ops.MyClamp.apply(ops.decode(x), -0.5, 0.5)
        return y, self.scaler(x).squeeze(0)
x = torch.linspace(-1, 1, 6).reshape(1, 6)
torch.onnx.export(M(), (x,), "model.onnx", input_names=["x"], dynamo=DYNAMO)
np.savez("io.npz", x=x.numpy())
print("RESTORED", ops.decode(torch.ones(1)).item(), type(M().scaler).forward.__module__,
      ops.MyClamp.__dict__.get("apply") is apply_before)
"""


def _python_export(tmp_path, dynamo):
    (tmp_path / "rw.py").write_text(PY_REWRITERS)
    (tmp_path / "cfg.json").write_text('{"tag": "mine"}')
    return run_script(tmp_path, PY_EXPORT.replace("DYNAMO", str(dynamo)), backend="tensorrt",
                      PYTHONPATH=f"{HERE}:{tmp_path}", TORCHRW_PYTHON="rw",
                      TORCHRW_CONFIG=tmp_path / "cfg.json").check()


def _expected(x):
    return -np.clip(x * 2 * 10, -0.5, 0.5), np.abs(x[0] * 5 + 1)


@pytest.mark.parametrize("dynamo", [True, False])
def test_python_function_module_and_symbolic_rewriters(tmp_path, dynamo):
    run = _python_export(tmp_path, dynamo)
    exporter = "torch.export" if dynamo else "torchscript"
    assert f"CTX {exporter} tensorrt mine" in run.stdout
    assert "FN_ORIGIN MyClamp.symbolic -0.5 0.5" in run.stdout
    assert "SQ_ORIGIN " + exporter in run.stdout
    ops = run.ops()
    assert "Clip" in ops and "Neg" in ops and "Abs" in ops, ops
    x = np.load(run.path("io.npz"))["x"]
    y, s = ort_run(run.path("model.onnx"), {"x": x})
    want_y, want_s = _expected(x)
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(s, want_s, rtol=1e-6)
    assert "RESTORED 2.0 userpkg.models True" in run.stdout


def test_torch_export_export_graph_carries_the_rewrites(tmp_path):
    (tmp_path / "rw.py").write_text(PY_REWRITERS)
    code = """
import torch
import userpkg.ops as ops
from userpkg.models import Scaler
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scaler = Scaler()
    def forward(self, x):
        return ops.decode(x).repeat(2), self.scaler(x)
x = torch.arange(3.0)
ep = torch.export.export(M(), (x,))
print("CAPTURED", sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"}))
low = ep.run_decompositions()
print("LOWERED", sorted({str(n.target) for n in low.graph.nodes if n.op == "call_function"}))
a, b = low.module()(x)
print("VALUES", a.tolist(), b.tolist())
"""
    run = run_script(tmp_path, code, backend="tensorrt", PYTHONPATH=f"{HERE}:{tmp_path}",
                     TORCHRW_PYTHON="rw").check()
    captured = [l for l in run.stdout.splitlines() if l.startswith("CAPTURED")][0]
    lowered = [l for l in run.stdout.splitlines() if l.startswith("LOWERED")][0]
    # Python rewriters are in the captured program: decode's * 10 and the
    # wrapper's + 1 (mul and add by constants).
    assert "aten.mul.Tensor" in captured and "aten.add.Tensor" in captured
    # C operator rewriters apply when the program is lowered: repeat of a
    # 1-D tensor goes through a 2-D one.
    assert "aten.unsqueeze.default" in lowered and "aten.squeeze.dims" in lowered
    assert "VALUES [0.0, 20.0, 40.0, 0.0, 20.0, 40.0] [1.0, 6.0, 11.0]" in run.stdout


def test_both_exporters_in_one_process_leak_nothing(tmp_path):
    code = """
import io, torch, onnx
class M(torch.nn.Module):
    def forward(self, x):
        return x.repeat(2)
def ops(dynamo):
    buf = io.BytesIO()
    prog = torch.onnx.export(M(), (torch.arange(3.0),), None if dynamo else buf, dynamo=dynamo)
    model = prog.model_proto if dynamo else onnx.load_from_string(buf.getvalue())
    return [n.op_type for n in model.graph.node]
for dynamo in (True, False, True):
    print("OPS", dynamo, "Squeeze" in ops(dynamo))
class Bad(torch.nn.Module):
    def forward(self, x):
        x.repeat(2)
        raise ValueError("model bug")
try:
    torch.onnx.export(Bad(), (torch.arange(3.0),), None, dynamo=True)
except Exception as e:
    print("RAISED", type(e).__name__)
print("AFTER", "Squeeze" in ops(False), torch.onnx.export.__module__, torch.export.export.__module__)
"""
    run = run_script(tmp_path, code, backend="tensorrt").check()
    assert [l for l in run.stdout.splitlines() if l.startswith("OPS")] == \
        ["OPS True True", "OPS False True", "OPS True True"]
    assert "RAISED" in run.stdout
    assert "AFTER True torch.onnx torch.export" in run.stdout


def test_rewriter_context_without_preload(tmp_path):
    code = f"""
import sys
sys.path.insert(0, {str(BUILD / "python")!r})
import torch, torchrw
class M(torch.nn.Module):
    def forward(self, x):
        return x.repeat(2)
def ops():
    prog = torch.onnx.export(M(), (torch.arange(3.0),), None, dynamo=True)
    return [n.op_type for n in prog.model_proto.graph.node]
print("BEFORE", "Squeeze" in ops())
with torchrw.RewriterContext(backend="tensorrt"):
    print("INSIDE", "Squeeze" in ops())
print("AFTER", "Squeeze" in ops())
"""
    run = run_script(tmp_path, code, preload=False).check()
    assert "BEFORE False" in run.stdout and "INSIDE True" in run.stdout
    assert "AFTER False" in run.stdout


def test_a_rewriter_that_needs_a_static_size_hands_a_dynamic_one_to_the_original(tmp_path):
    # ops_plugin's expm1 rewriter (x2) needs the last size as a constant:
    # static, it applies; declared dynamic, torch.export has no constant,
    # trw_tensor_size says TRW_ESYMBOLIC, and torch's expm1 runs instead.
    code = """
import sys, numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        return torch.expm1(x)
x = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
dynamic = {"x": {1: torch.export.Dim("n")}} if sys.argv[1] == "dynamic" else None
torch.onnx.export(M(), (x,), "model.onnx", input_names=["x"], dynamo=True,
                  dynamic_shapes=dynamic)
np.savez("io.npz", x=x.numpy(), a=torch.expm1(x).numpy())
"""
    for kind, factor in (("static", 2.0), ("dynamic", 1.0)):
        (tmp_path / kind).mkdir()
        script = code.replace("sys.argv[1]", repr(kind))
        run = run_script(tmp_path / kind, script, backend="tensorrt", TORCHRW_LOG="info",
                         TORCHRW_PLUGINS=PLUGINS / "ops_plugin.so").check()
        fell_back = "aten::expm1@tensorrt cannot apply while torch.export traces, the original runs"
        assert (fell_back in run.stderr) == (kind == "dynamic"), run.stderr
        io = np.load(run.path("io.npz"))
        (got,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
        np.testing.assert_allclose(got, io["a"] * factor, rtol=1e-5)


def test_rewriter_error_names_the_rewriter(tmp_path):
    code = """
import torch
class M(torch.nn.Module):
    def forward(self, x):
        return torch.abs(x)
try:
    torch.onnx.export(M(), (torch.randn(2, 3, 4),), None, dynamo=True)
except Exception as e:
    chain = []
    while e is not None:
        chain.append(str(e))
        e = e.__cause__
    print("ERROR", " | ".join(chain).replace(chr(10), " "))
"""
    run = run_script(tmp_path, code, backend="tensorrt",
                     TORCHRW_PLUGINS=PLUGINS / "ops_plugin.so").check()
    line = [l for l in run.stdout.splitlines() if l.startswith("ERROR")][0]
    assert "torch.abs@tensorrt" in line and "3-D input is not supported" in line


def test_strict_capture_takes_c_rewriters_but_not_python_ones(tmp_path):
    # torch.export.export(strict=True) traces the model's Python with
    # dynamo, which cannot trace into torchrw's patched callable (a C
    # object): a Python rewriter makes a strict capture fail, and torch's
    # error says why.  C operator rewriters apply as in non-strict capture.
    # torch.onnx.export captures non-strict.
    (tmp_path / "rw.py").write_text(textwrap.dedent("""
        from torchrw import FUNCTION_REWRITER
        @FUNCTION_REWRITER.register_rewriter("userpkg.ops.decode", backend="tensorrt")
        def decode(x):
            return FUNCTION_REWRITER.get_context().origin_func(x) * 10
    """))
    code = """
import torch
import userpkg.ops as ops
class M(torch.nn.Module):
    def forward(self, x):
        return ops.decode(x).repeat(2)
x = torch.arange(3.0)
try:
    ep = torch.export.export(M(), (x,), strict=True)
    low = ep.run_decompositions()
    print("STRICT", ep.module()(x).tolist(),
          "aten.unsqueeze.default" in {str(n.target) for n in low.graph.nodes})
except Exception as e:
    print("FAILED", type(e).__name__, str(e).splitlines()[0])
print("RESTORED", ops.decode.__module__)
"""
    with_python = run_script(tmp_path, code, backend="tensorrt",
                             PYTHONPATH=f"{HERE}:{tmp_path}", TORCHRW_PYTHON="rw").check()
    assert "call to a callable object with no traceable __call__" in with_python.stdout
    assert "RESTORED userpkg.ops" in with_python.stdout
    (tmp_path / "c").mkdir()
    c_only = run_script(tmp_path / "c", code, backend="tensorrt", PYTHONPATH=HERE).check()
    assert "STRICT [0.0, 2.0, 4.0, 0.0, 2.0, 4.0] True" in c_only.stdout


def test_a_symbolic_that_hands_back_its_input_leaves_the_model_s_values_alone(tmp_path):
    # squeeze(1) of a dim of 3 is the identity: the built-in squeeze
    # symbolic returns its input.  The exporter names a translation's output
    # after the FX node, which renamed the graph input x ("squeeze_orig")
    # and made onnx_ir refuse the Parameter's initializer ("Key 'p_w' does
    # not match the name of the value"); an Identity now stands between.
    code = """
import numpy as np, torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(2, 3, generator=torch.Generator().manual_seed(0)))
    def forward(self, x):
        return x.squeeze(1), self.w.squeeze(1) * x
x = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
torch.onnx.export(M(), (x,), "model.onnx", dynamo=True)
a, b = M()(x)
np.savez("io.npz", x=x.numpy(), a=a.detach().numpy(), b=b.detach().numpy())
"""
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_LOG="info").check()
    assert "fired builtin:squeeze@default" in run.stderr, run.stderr
    assert [i.name for i in run.model().graph.input] == ["x"]
    _numerics(run, names=("x",))


DEFAULT_EXPORT = """
import numpy as np, torch
torch.manual_seed(0)
class Block(torch.nn.Module):           # a transformer block, as users export it
    def __init__(self):
        super().__init__()
        self.ln = torch.nn.LayerNorm(16)
        self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(),
                                       torch.nn.Linear(32, 16))
    def forward(self, x):
        h = self.ln(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + a
        return x + self.mlp(self.ln(x))
m, x = Block().eval(), torch.randn(1, 5, 16)
torch.onnx.export(m, (x,), "model.onnx", input_names=["x"], output_names=["y"])  # torch's defaults
with torch.no_grad():
    np.savez("io.npz", x=x.numpy(), y=m(x).numpy())
"""


def _check(path, backend):
    import subprocess
    p = subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(path), "--backend", backend,
                        "--no-fixes"], capture_output=True, text=True)
    return p.returncode, p.stdout


def test_the_default_export_passes_the_newest_tensorrt_table(tmp_path):
    # torch's default export (torch.export, its default opset: 18 and up)
    # is what TensorRT 10.x's parser takes; 8.5's refuses its opset and its
    # LayerNormalization.  Under tensorrt (10.15) torchrw rewrites nothing
    # of it that 10.x takes: LayerNormalization stays.
    plain = run_script(tmp_path, DEFAULT_EXPORT, preload=False).check()
    assert _check(plain.path("model.onnx"), "tensorrt") == (0, "")
    rc, out = _check(plain.path("model.onnx"), "tensorrt:8.5")
    assert rc == 1 and "LayerNormalization: operator is not supported" in out, out
    assert "is above the highest tensorrt supports (17)" in out, out
    (tmp_path / "trw").mkdir()
    run = run_script(tmp_path / "trw", DEFAULT_EXPORT, backend="tensorrt").check()
    assert "LayerNormalization" in run.ops()
    assert _check(run.path("model.onnx"), "tensorrt") == (0, "")
    io = np.load(run.path("io.npz"))
    (y,) = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-5)
