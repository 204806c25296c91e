"""Symbolic rewriters written in C (issue 4): the built-in squeeze, and the
C API exercised by tests/plugins/sym_plugin.c."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import EXPORTER, PLUGINS, ROOT, model_opset, ort_run, run_script, squeeze_axes

SYM_PLUGIN = PLUGINS / "sym_plugin.so"

SQUEEZE = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        return x.squeeze() * 2, x.squeeze(0), x.squeeze(1), x.squeeze(-2)
x = torch.randn(1, 3, 1, 2, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=OPSET, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), **{f"o{i}": o.numpy() for i, o in enumerate(M()(x))})
"""


@pytest.mark.parametrize("opset", [11, 13])
def test_builtin_squeeze_has_static_axes(tmp_path, opset):
    run = run_script(tmp_path, SQUEEZE.replace("OPSET", str(opset)), backend="tensorrt").check()
    model = run.model()
    # squeeze() -> [0, 2]; squeeze(0) -> [0]; squeeze(1) is the identity
    # (size 3); squeeze(-2) -> [2].
    assert squeeze_axes(model) == [[0, 2], [0], [2]]
    # Axes are an input from opset 13 (torch.export's exporter builds at 18
    # and converts down when it can).
    for n in model.graph.node:
        if n.op_type == "Squeeze":
            assert (len(n.input) == 2) == (model_opset(model) >= 13)
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"]})
    for i, o in enumerate(outs):
        np.testing.assert_allclose(o, io[f"o{i}"], rtol=1e-6)


def test_builtin_squeeze_can_be_switched_off(tmp_path):
    run = run_script(tmp_path, SQUEEZE.replace("OPSET", "11"), backend="tensorrt",
                     TORCHRW_DISABLE="builtin:squeeze@default").check()
    # torch's own: squeeze() becomes a Squeeze without axes (torch.export's
    # exporter also translates the identity squeeze(1), with computed axes).
    axes = squeeze_axes(run.model())
    assert axes[0] is None
    if EXPORTER == "torchscript":
        assert axes == [None, [0], [2]]


SQUEEZE_DYNAMIC = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        return x.squeeze(0) + 1
x = torch.randn(1, 3, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=13, input_names=["x"],
                  dynamic_axes={"x": {0: "b"}}, **TS)
np.save("x.npy", x.numpy())
"""


@pytest.mark.skipif(EXPORTER != "torchscript",
                    reason="torch.export's exporter translates squeeze itself (no symbolic)")
def test_builtin_squeeze_says_why_it_leaves_a_node_to_the_original(tmp_path):
    run = run_script(tmp_path, SQUEEZE_DYNAMIC, backend="tensorrt", TORCHRW_LOG="info").check()
    assert ("leaves squeeze to the original symbolic: the size of dim 0 is not known "
            "statically" in run.stderr), run.stderr
    assert "symbolic/squeeze.c:" in run.stderr
    # torch's own symbolic: squeeze(0) of a dimension that may not be 1.
    x = np.load(run.path("x.npy"))
    (out,) = ort_run(run.path("model.onnx"), {"x": x})
    np.testing.assert_allclose(out, x[0] + 1, rtol=1e-6)


def test_constant_inputs_attributes_and_two_outputs(tmp_path):
    code = """
import numpy as np, torch
class M(torch.nn.Module):
    def forward(self, x):
        v, i = torch.topk(x, 3, dim=1)
        return torch.nn.functional.leaky_relu(x, 0.1), v, i
x = torch.randn(2, 6, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
np.savez("io.npz", x=x.numpy(), **{f"o{i}": o.numpy() for i, o in enumerate(M()(x))})
"""
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_PLUGINS=SYM_PLUGIN).check()
    leaky = [n for n in run.model().graph.node if n.op_type == "LeakyRelu"][0]
    assert abs(leaky.attribute[0].f - 0.2) < 1e-6
    io = np.load(run.path("io.npz"))
    y, v, i = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(y, np.where(io["x"] > 0, io["x"], 0.2 * io["x"]), rtol=1e-6)
    np.testing.assert_allclose(v, io["o1"], rtol=1e-6)
    np.testing.assert_array_equal(i, io["o2"])


def test_custom_domain_and_every_attribute_kind(tmp_path):
    code = """
import torch
class M(torch.nn.Module):
    def forward(self, x):
        # (* 2: a graph of custom-domain nodes only has no ONNX opset import,
        # and torch.export's exporter then fails to convert it to opset 12.)
        return torch.relu(x) * 2
torch.onnx.export(M(), (torch.randn(5, 4),), "model.onnx", opset_version=12,
                  custom_opsets={"trw.test": 1}, **TS)
"""
    run = run_script(tmp_path, code, backend="ncnn", TORCHRW_PLUGINS=SYM_PLUGIN).check()
    model = run.model()
    (probe,) = [n for n in model.graph.node if n.op_type == "Probe"]
    assert probe.domain == "trw.test"
    attrs = {a.name: a for a in probe.attribute}
    # A symbolic builds nodes at the opset of the graph they join:
    # torch.export's exporter builds at 18 and converts down afterwards.
    assert attrs["opset"].i == (12 if EXPORTER == "torchscript" else 18)
    assert abs(attrs["scale"].f - 0.25) < 1e-9
    assert attrs["backend"].s == b"ncnn"
    assert list(attrs["seen"].ints) == [2, 5, 1]  # rank, size 0, TRW_DTYPE_FLOAT32
    assert [round(f, 3) for f in attrs["weights"].floats] == [0.5, 1.5]
    assert numpy_helper.to_array(attrs["table"].t).tolist() == [[1, 2], [3, 4]]


def test_function_symbolic_in_c_calls_the_original(tmp_path):
    code = """
import torch, sys
sys.path.insert(0, HERE)
from userpkg.models import Clamped
torch.onnx.export(Clamped(), (torch.randn(4),), "model.onnx", opset_version=11, **TS)
""".replace("HERE", repr(str(ROOT / "tests" / "export")))
    run = run_script(tmp_path, code, backend="openvino", TORCHRW_PLUGINS=SYM_PLUGIN).check()
    assert run.ops()[-2:] == ["Clip", "Neg"]


def test_symbolic_error_names_rewriter(tmp_path):
    code = """
import torch
try:
    torch.onnx.export(torch.nn.ELU(), (torch.randn(3),), "model.onnx", **TS)
except RuntimeError as e:
    print("ERROR", e)
"""
    run = run_script(tmp_path, code, backend="openvino", TORCHRW_PLUGINS=SYM_PLUGIN).check()
    assert "elu@openvino (tests/plugins/sym_plugin.c:" in run.stdout
    assert "elu is not supported by this test plugin" in run.stdout


# index_put over a region with no element (swin3d_t's shifted-window mask:
# x[0:-w] on a dim of w).  torch's symbolic reshapes the values to the
# region's shape, a constant with a 0: torch 2.x's shape inference fails
# ("minus_one_pos != -1"), 1.13's divides by zero (SIGFPE), whether the
# sizes are literal or traced.  torchrw's puts nothing.
EMPTY_REGION = """
import numpy as np, torch

class M(torch.nn.Module):
    def forward(self, x):
        d = SIZE
        mask = x.new_zeros((d, d))
        count = 0
        for a in ((0, -3), (-3, -1), (-1, None)):
            mask[a[0]:a[1], :] = count
            count += 1
        return x + mask

x = torch.randn(1, 2, 3, 3)
np.savez("io.npz", x=x.numpy(), y=M()(x).numpy())
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"], **TS)
"""


@pytest.mark.skipif(EXPORTER != "torchscript",
                    reason="torch.export's exporter has no index_put symbolic to fail")
@pytest.mark.parametrize("size, backend", [("3", "tensorrt"), ("x.shape[2]", "ncnn")])
def test_builtin_index_put_over_an_empty_region_puts_nothing(tmp_path, size, backend):
    code = EMPTY_REGION.replace("SIZE", size)
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", code, preload=False)
    assert plain.returncode != 0, "torch exported it itself: the test shows nothing"
    run = run_script(tmp_path, code, backend=backend, TORCHRW_LOG="info").check()
    assert "fired builtin:aten::index_put@default" in run.stderr, run.stderr
    io = np.load(run.path("io.npz"))
    got, = ort_run(run.path("model.onnx"), {"x": io["x"]})
    np.testing.assert_allclose(got, io["y"])
