"""torchrw.RewriterContext: explicit use without preloading (issue 3)."""
from conftest import BUILD, run_script

PRELUDE = f"""
import io, sys
sys.path.insert(0, {str(BUILD / "python")!r})
import torch, onnx, torchrw
from torchrw import FUNCTION_REWRITER

class M(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.relu(x.repeat(2))

def ops(model=M(), opset=11):
    buf = io.BytesIO()
    torch.onnx.export(model, (torch.arange(3.0),), buf, opset_version=opset, **TS)
    return [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]

@FUNCTION_REWRITER.register_rewriter("torch.nn.functional.relu", backend="tensorrt")
def relu_as_clamp(x, inplace=False):
    ctx = FUNCTION_REWRITER.get_context()
    if "backend_config" in ctx.cfg:
        print("CFG", ctx.cfg.backend_config.type, ctx.cfg["onnx_config"]["opset_version"], ctx.opset)
    return x.clamp(min=0)
"""

CFG = "{'backend_config': {'type': 'tensorrt'}, 'onnx_config': {'opset_version': 11}}"


def lines(run, prefix):
    return [l[len(prefix):].strip() for l in run.stdout.splitlines() if l.startswith(prefix)]


def test_block_applies_operator_and_python_rewriters_only_inside(tmp_path):
    code = PRELUDE + f"""
print("BEFORE", ops())
with torchrw.RewriterContext(cfg={CFG}):
    print("INSIDE", ops())
    # Eager inside the block: no trace, so nothing is rewritten.
    print("EAGER", torch.nn.functional.relu is not None and torch.arange(2.0).repeat(2).tolist())
print("AFTER", ops())
print("PATCHED_AFTER", torch.nn.functional.relu.__module__, "repeat" in torch.Tensor.__dict__)
"""
    run = run_script(tmp_path, code, preload=False).check()
    before, inside, after = lines(run, "BEFORE")[0], lines(run, "INSIDE")[0], lines(run, "AFTER")[0]
    assert "Squeeze" not in before and "Relu" in before
    # clamp(min=0): Clip from the TorchScript exporter, Max from torch.export's.
    assert "Squeeze" in inside and "Unsqueeze" in inside and "Relu" not in inside
    assert "Clip" in inside or "Max" in inside
    assert after == before
    assert lines(run, "CFG") == ["tensorrt 11 11"]
    assert lines(run, "PATCHED_AFTER") == ["torch.nn.functional False"]


def test_nesting_is_refused_and_reentering_works(tmp_path):
    code = PRELUDE + """
ctx = torchrw.RewriterContext(backend="tensorrt")
with ctx:
    try:
        with torchrw.RewriterContext(backend="ncnn"):
            pass
    except RuntimeError as e:
        print("NESTED", e)
    print("STILL", "Squeeze" in ops())
with ctx:
    print("AGAIN", "Squeeze" in ops())
print("OUTSIDE", "Squeeze" in ops())
"""
    run = run_script(tmp_path, code, preload=False).check()
    assert "nesting is not supported" in lines(run, "NESTED")[0]
    assert lines(run, "STILL") == ["True"] and lines(run, "AGAIN") == ["True"]
    assert lines(run, "OUTSIDE") == ["False"]


def test_exception_in_block_leaves_nothing_patched(tmp_path):
    code = PRELUDE + """
class Bad(torch.nn.Module):
    def forward(self, x):
        torch.nn.functional.relu(x)
        raise KeyError("boom")
try:
    with torchrw.RewriterContext(backend="tensorrt"):
        ops(Bad())
except Exception as e:
    while e.__cause__ is not None:  # torch.export's exporter wraps it
        e = e.__cause__
    print("RAISED", e)
print("CLEAN", torch.nn.functional.relu.__module__, torch._C._create_graph_by_tracing.__class__.__name__)
print("PLAIN", "Squeeze" in ops())
"""
    run = run_script(tmp_path, code, preload=False).check()
    assert lines(run, "RAISED") == ["'boom'"]
    assert lines(run, "CLEAN") == ["torch.nn.functional builtin_function_or_method"]
    assert lines(run, "PLAIN") == ["False"]


def test_bad_backend_is_clear(tmp_path):
    code = PRELUDE + """
try:
    torchrw.RewriterContext(backend="tensorrtt").__enter__()
except (ValueError, RuntimeError) as e:
    print("ERROR", type(e).__name__, e)
"""
    run = run_script(tmp_path, code, preload=False).check()
    errs = lines(run, "ERROR")
    assert "backend 'tensorrtt' is not a known backend" in errs[0] and "onnxruntime" in errs[0]


def test_backend_versions(tmp_path):
    # Issue 22: a spec names the engine version; a rewriter for some versions
    # says which, and sees the version; bad specs are one clear error each.
    code = PRELUDE + """
@FUNCTION_REWRITER.register_rewriter("torch.nn.functional.relu", backend="tensorrt",
                                     backend_version="<8.6")
def relu_for_old_parsers(x, inplace=False):
    print("OLD", FUNCTION_REWRITER.get_context().backend_version)
    return x.clamp(min=0)
for spec in ("tensorrt:8.5", "tensorrt:10.15", "tensorrt"):
    with torchrw.RewriterContext(backend=spec):
        print("OPS", spec, "Squeeze" in ops())
for spec in ("tensorrt:", "tensorrt:x", "tensorrt:9.0"):
    try:
        torchrw.RewriterContext(backend=spec).__enter__()
    except (ValueError, RuntimeError) as e:
        print("ERROR", e)
try:
    FUNCTION_REWRITER.register_rewriter("torch.relu", backend="tensorrt", backend_version="x")(print)
except ValueError as e:
    print("REGISTER", e)
"""
    run = run_script(tmp_path, code, preload=False).check()
    assert lines(run, "OLD") == ["8.5"]
    assert lines(run, "OPS") == ["tensorrt:8.5 True", "tensorrt:10.15 True", "tensorrt True"]
    errs = lines(run, "ERROR")
    assert len(errs) == 3, run.stdout
    for spec, err in zip(("tensorrt:", "tensorrt:x", "tensorrt:9.0"), errs):
        assert f"backend '{spec}'" in err and "known versions of tensorrt: 8.5, 8.6, 10.15" in err, err
    reg = lines(run, "REGISTER")
    assert reg and "'x' is not a version constraint" in reg[0], run.stdout


def test_backend_from_the_cfg_else_default_and_configs_with_to_dict(tmp_path):
    # As mmdeploy: no backend named takes cfg's backend_config.type, else
    # "default".  A mapping with to_dict() (mmengine's Config) is a cfg too,
    # and values JSON cannot hold are kept as their str().
    code = PRELUDE + """
import pathlib
class Config:  # the shape of mmengine.Config: attribute access and to_dict()
    def __init__(self, d):
        self._d = d
    def to_dict(self):
        return dict(self._d)
onnx_config = {"opset_version": 11}
cfgs = {"dict": {"backend_config": {"type": "tensorrt"}, "onnx_config": onnx_config},
        "positional+opset": {"backend_config": {"type": "tensorrt"}, "onnx_config": onnx_config},
        "to_dict": Config({"backend_config": {"type": "tensorrt"},
                           "onnx_config": dict(onnx_config, save_file=pathlib.Path("e.onnx"))}),
        "none": None}
for name, cfg in cfgs.items():
    if name == "positional+opset":
        ctx = torchrw.RewriterContext(cfg, opset=11)
    else:
        ctx = torchrw.RewriterContext(cfg=cfg)
    with ctx:
        print("OPS", name, "Squeeze" in ops())
"""
    run = run_script(tmp_path, code, preload=False).check()
    assert lines(run, "OPS") == ["dict True", "positional+opset True", "to_dict True",
                                 "none False"]


def test_context_in_a_preloaded_process_overrides_the_environment(tmp_path):
    code = PRELUDE + """
print("ENV", "Squeeze" in ops())
with torchrw.RewriterContext(backend="onnxruntime"):
    print("CTX", "Squeeze" in ops())
print("ENV_AGAIN", "Squeeze" in ops())
"""
    run = run_script(tmp_path, code, backend="tensorrt").check()
    assert lines(run, "ENV ") == ["True"]
    assert lines(run, "CTX") == ["False"]
    assert lines(run, "ENV_AGAIN") == ["True"]
