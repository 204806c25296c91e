"""Built-in rewriters of rewriters/math.c: atan2, any, and % / fmod for TensorRT."""
import numpy as np
import pytest

from conftest import TORCH, ort_run, run_script

ATAN2 = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, y, x):
        return torch.atan2(y, x)

# All four quadrants, both axes and the origin, then random values.
pts = [(1, 1), (1, -1), (-1, -1), (-1, 1), (0, 1), (0, -1), (1, 0), (-1, 0),
       (0, 0), (2.5, -1e-3), (-2.5, -1e-3), (1e-3, -4.0), (-1e-3, -4.0)]
g = torch.Generator().manual_seed(0)
y = torch.cat([torch.tensor([p[0] for p in pts], dtype=torch.float32),
               torch.randn(64, generator=g) * 3])
x = torch.cat([torch.tensor([p[1] for p in pts], dtype=torch.float32),
               torch.randn(64, generator=g) * 3])
torch.onnx.export(M(), (y, x), "model.onnx", opset_version=11,
                  input_names=["y", "x"], output_names=["out"], **TS)
np.savez("io.npz", y=y.numpy(), x=x.numpy(), out=M()(y, x).numpy())
"""


def test_atan2_exports_at_opset_11_and_is_right_in_every_quadrant(tmp_path):
    run = run_script(tmp_path, ATAN2, backend="onnxruntime").check()
    ops = run.ops()
    assert "Atan" in ops and "Where" in ops, ops
    io = np.load(run.path("io.npz"))
    (out,) = ort_run(run.path("model.onnx"), {"y": io["y"], "x": io["x"]})
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, io["out"], rtol=1e-5, atol=1e-6)
    # Spelled out for the first points: quadrants II and III differ by 2*pi.
    np.testing.assert_allclose(out[:9], [np.pi / 4, 3 * np.pi / 4, -3 * np.pi / 4,
                                         -np.pi / 4, 0, np.pi, np.pi / 2,
                                         -np.pi / 2, 0], atol=1e-6)


def test_atan2_without_the_rewriter_fails_or_is_wrong(tmp_path):
    # TORCHRW_DISABLE switches the built-in off.  torch 1.13 has no atan2
    # symbolic at all; torch 2.x has one that is wrong on the axes (y = 0
    # with x < 0 gives -pi, the origin NaN).
    run = run_script(tmp_path, ATAN2, backend="onnxruntime",
                     TORCHRW_DISABLE="builtin:torch.atan2@default")
    if TORCH < (2, 0):
        assert run.returncode != 0
        assert "atan2" in run.stderr
        return
    run.check()
    io = np.load(run.path("io.npz"))
    (out,) = ort_run(run.path("model.onnx"), {"y": io["y"], "x": io["x"]})
    assert np.isnan(out[8]) or abs(out[5] - np.pi) > 1, out[:9]


ANY = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x, b):
        return torch.any(x), x.any(1), torch.any(x, 0, keepdim=True), b.any(1)

x = torch.tensor([[0.0, 0.25, 0.0], [0.0, 0.0, 0.0], [-0.5, 0.0, 3.0]])
b = x > 0.1
torch.onnx.export(M(), (x, b), "model.onnx", opset_version=11,
                  input_names=["x", "b"], output_names=["all", "d1", "d0", "bd"], **TS)
outs = [o.numpy() for o in M()(x, b)]
np.savez("io.npz", x=x.numpy(), b=b.numpy(), **{f"o{i}": o for i, o in enumerate(outs)})
"""


def test_any_of_small_floats_is_true(tmp_path):
    run = run_script(tmp_path, ANY, backend="ncnn").check()
    assert "NotEqual" in run.ops() or "Equal" in run.ops(), run.ops()
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"], "b": io["b"]})
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out.astype(bool), io[f"o{i}"])
    # The row [0, 0.25, 0] is what torch's own export gets wrong.
    assert outs[1].tolist() == [1, 0, 1]


MOD = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, a, b, i, j):
        return (a % b, torch.fmod(a, b), a % 2.5, torch.fmod(a, -1.5),
                i % j, torch.fmod(i, j), i % 3, i % -4, torch.remainder(i, j))

g = torch.Generator().manual_seed(1)
a = torch.randn(4, 6, generator=g) * 7
b = torch.randn(4, 6, generator=g) * 2
b = torch.where(b.abs() < 0.1, torch.full_like(b, 0.5), b)
i = torch.randint(-20, 20, (4, 6), generator=g)
j = torch.randint(1, 6, (4, 6), generator=g) * (torch.randint(0, 2, (4, 6), generator=g) * 2 - 1)
torch.onnx.export(M(), (a, b, i, j), "model.onnx", opset_version=11,
                  input_names=["a", "b", "i", "j"],
                  output_names=[f"o{k}" for k in range(9)], **TS)
outs = [o.numpy() for o in M()(a, b, i, j)]
np.savez("io.npz", a=a.numpy(), b=b.numpy(), i=i.numpy(), j=j.numpy(),
         **{f"o{k}": o for k, o in enumerate(outs)})
"""


# Outputs are always named: the ONNX Runtime runner returns them as a JSON
# object, and JavaScript puts integer-like names such as "7" first.
def _mod_numerics(run):
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"),
                   {k: io[k] for k in ("a", "b", "i", "j")})
    for k, out in enumerate(outs):
        ref = io[f"o{k}"]
        if ref.dtype.kind == "f":
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
        else:
            np.testing.assert_array_equal(out, ref)


def test_tensorrt_mod_and_fmod_have_no_mod_node(tmp_path):
    run = run_script(tmp_path, MOD, backend="tensorrt").check()
    assert "Mod" not in run.ops(), run.ops()
    _mod_numerics(run)


def test_other_backends_keep_mod(tmp_path):
    run = run_script(tmp_path, MOD, backend="onnxruntime").check()
    assert "Mod" in run.ops()
    _mod_numerics(run)


@pytest.mark.parametrize("name", ["builtin:torch.fmod@tensorrt", "builtin:torch.remainder@tensorrt"])
def test_disable_brings_mod_back(tmp_path, name):
    run = run_script(tmp_path, MOD, backend="tensorrt", TORCHRW_DISABLE=name).check()
    assert "Mod" in run.ops()


def test_default_rewriters_leave_torchscript_traces_alone(tmp_path):
    code = """
import torch
class M(torch.nn.Module):
    def forward(self, y, x):
        return torch.atan2(y, x), torch.any(x)
t = torch.jit.trace(M(), (torch.randn(3), torch.randn(3)))
print(sorted({n.kind() for n in t.graph.nodes()}))
"""
    run = run_script(tmp_path, code, backend="torchscript").check()
    assert "aten::atan2" in run.stdout and "aten::any" in run.stdout
    assert "aten::atan'" not in run.stdout


FLOOR_DIV = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, a, b):
        return (a // b, torch.div(a, b, rounding_mode="floor"), torch.floor_divide(a, 3),
                torch.div(a, -4, rounding_mode="floor"),
                torch.div(a.float(), 3.0, rounding_mode="floor"))

a = torch.tensor([-7, -6, -1, 0, 1, 5, 6, 7, 100, -100])
b = torch.tensor([2, -2, 3, -3, 2, -5, 4, -4, 7, 9])
torch.onnx.export(M(), (a, b), "model.onnx", opset_version=11, input_names=["a", "b"], **TS)
np.savez("io.npz", a=a.numpy(), b=b.numpy(), **{f"o{i}": o.numpy() for i, o in enumerate(M()(a, b))})
"""


def test_tensorrt_integer_floor_division_has_no_mod_node(tmp_path):
    run = run_script(tmp_path, FLOOR_DIV, backend="tensorrt").check()
    assert "Mod" not in run.ops()
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"a": io["a"], "b": io["b"]})
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out, io[f"o{i}"])
    plain = run_script(tmp_path, FLOOR_DIV, backend="onnxruntime").check()
    assert "Mod" in plain.ops()
