"""Built-in rewriter of rewriters/grid_sample.c: F.grid_sample in standard
ops below opset 16."""
import itertools

import numpy as np
import pytest

from conftest import DYNAMIC_SIZES, TORCHSCRIPT_FAILURE, ort_run, run_script, torchscript_only

EXPORT = """
import itertools
import numpy as np
import torch
import torch.nn.functional as F

CASES = list(itertools.product(["bilinear", "nearest"], ["zeros", "border"],
                               [False, True]))

class M(torch.nn.Module):
    def forward(self, x, grid):
        return tuple(F.grid_sample(x, grid, mode=m, padding_mode=p, align_corners=a)
                     for m, p, a in CASES)

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 3, 5, 7, generator=g)
# A grid that reaches well outside [-1, 1], plus the exact corners and edges.
grid = torch.rand(2, 4, 6, 2, generator=g) * 3.2 - 1.6
grid[0, 0, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
grid[0, 1, :3] = torch.tensor([[0.0, 0.0], [1.02, 0.3], [-1.1, -1.1]])
torch.onnx.export(M(), (x, grid), "model.onnx", opset_version=OPSET,
                  input_names=["x", "grid"],
                  output_names=[f"o{i}" for i in range(len(CASES))],
                  dynamic_axes={"x": {0: "n"}, "grid": {0: "n"}}, **TS)
x2 = torch.randn(3, 3, 5, 7, generator=g)
grid2 = torch.rand(3, 4, 6, 2, generator=g) * 2.4 - 1.2
outs = M()(x, grid)
outs2 = M()(x2, grid2)
np.savez("io.npz", x=x.numpy(), grid=grid.numpy(), x2=x2.numpy(), grid2=grid2.numpy(),
         **{f"o{i}": o.numpy() for i, o in enumerate(outs)},
         **{f"p{i}": o.numpy() for i, o in enumerate(outs2)})
"""

CASES = list(itertools.product(["bilinear", "nearest"], ["zeros", "border"],
                               [False, True]))


@torchscript_only(DYNAMIC_SIZES)
def test_grid_sample_below_16_has_no_grid_sample_node(tmp_path):
    run = run_script(tmp_path, EXPORT.replace("OPSET", "11"), backend="tensorrt").check()
    ops = run.ops()
    assert "GridSample" not in ops
    assert not any(n.domain not in ("", "ai.onnx") for n in run.model().graph.node)
    assert "GatherElements" in ops, ops
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"], "grid": io["grid"]})
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, io[f"o{i}"], rtol=1e-4, atol=1e-5,
                                   err_msg=str(CASES[i]))
    # Another batch size at run time.
    outs = ort_run(run.path("model.onnx"), {"x": io["x2"], "grid": io["grid2"]})
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, io[f"p{i}"], rtol=1e-4, atol=1e-5,
                                   err_msg=str(CASES[i]))


@torchscript_only(TORCHSCRIPT_FAILURE)
def test_grid_sample_fails_below_16_when_disabled(tmp_path):
    run = run_script(tmp_path, EXPORT.replace("OPSET", "11"), backend="onnxruntime",
                     TORCHRW_DISABLE="builtin:aten::grid_sampler@default")
    assert run.returncode != 0 and "grid_sampler" in run.stderr


def test_opset_16_keeps_grid_sample(tmp_path):
    run = run_script(tmp_path, EXPORT.replace("OPSET", "16"), backend="onnxruntime").check()
    assert run.ops().count("GridSample") == len(CASES)
