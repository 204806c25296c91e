"""Rewriters whose target's module is not imported: torchrw never imports
it, and applies the rewriter when the module is imported, also during the
export (issue 10, start-up and import side effects)."""
import json
import textwrap

import numpy as np

from conftest import ort_run, read_report, run_script

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
