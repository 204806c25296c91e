"""Built-in rewriters of rewriters/shape.c: roll (default), cat of bool and
uint8 (tensorrt), flatten, expand and chunk (ncnn)."""
import numpy as np

from conftest import DYNAMIC_SIZES, TORCHSCRIPT_FAILURE, ort_run, run_script, torchscript_only

ROLL = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x):
        return (torch.roll(x, 7, 1), torch.roll(x, -2, -1), torch.roll(x, 3),
                torch.roll(x, (1, -9), (0, 2)), x.roll(5, 1))

x = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=[f"o{i}" for i in range(5)], **TS)
np.savez("io.npz", x=x.numpy(), **{f"o{i}": o.numpy() for i, o in enumerate(M()(x))})
"""


def test_roll_by_more_than_the_size_and_without_dims(tmp_path):
    run = run_script(tmp_path, ROLL, backend="openvino").check()
    ops = run.ops()
    assert "Slice" in ops and "Concat" in ops
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"]})
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out.astype(np.float32), io[f"o{i}"], err_msg=str(i))


@torchscript_only(TORCHSCRIPT_FAILURE)
def test_torchs_roll_fails_without_the_rewriter(tmp_path):
    # roll without dims is an AssertionError in torch 1.13's symbolic.
    run = run_script(tmp_path, ROLL, backend="openvino",
                     TORCHRW_DISABLE="builtin:torch.roll@default")
    assert run.returncode != 0


CAT = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x, y):
        a, b = x > 0, y > 0
        return (torch.cat([a, b], 1), torch.cat([a.to(torch.uint8), b.to(torch.uint8)], 1),
                torch.cat([x, y], 1))

g = torch.Generator().manual_seed(0)
x, y = torch.randn(2, 3, generator=g), torch.randn(2, 4, generator=g)
torch.onnx.export(M(), (x, y), "model.onnx", opset_version=11, input_names=["x", "y"],
                  output_names=["b", "u", "f"],
                  dynamic_axes={"x": {0: "n", 1: "k"}, "y": {0: "n", 1: "m"}}, **TS)
x2, y2 = torch.randn(5, 2, generator=g), torch.randn(5, 6, generator=g)
np.savez("io.npz", x=x2.numpy(), y=y2.numpy(),
         **{k: o.numpy() for k, o in zip("buf", M()(x2, y2))})
"""


def _concat_input_types(model):
    """The element type of every Concat's inputs, from value_info."""
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    return [types.get(n.input[0]) for n in inferred.graph.node if n.op_type == "Concat"]


def test_tensorrt_cat_of_bool_and_uint8_goes_through_int32(tmp_path):
    import onnx
    run = run_script(tmp_path, CAT, backend="tensorrt").check()
    kinds = _concat_input_types(run.model())
    assert onnx.TensorProto.BOOL not in kinds and onnx.TensorProto.UINT8 not in kinds, kinds
    assert kinds.count(onnx.TensorProto.INT32) == 2, kinds
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"], "y": io["y"]})
    for k, out in zip("buf", outs):
        np.testing.assert_allclose(out, io[k].astype(np.float64), rtol=1e-6, err_msg=k)


def test_onnxruntime_cat_keeps_bool(tmp_path):
    import onnx
    run = run_script(tmp_path, CAT, backend="onnxruntime").check()
    assert onnx.TensorProto.BOOL in _concat_input_types(run.model())


NCNN = """
import numpy as np
import torch

class M(torch.nn.Module):
    def forward(self, x):
        a = x.flatten(2)
        b = torch.flatten(x, 1, 2)
        c = x.flatten(1)
        d = x[:, :, :1].expand(x.size(0), x.size(1), 3, x.size(3))
        e = torch.chunk(x, 3, dim=1)
        return (a, b, c, d) + tuple(e)

x = torch.randn(2, 7, 3, 4, generator=torch.Generator().manual_seed(0))
torch.onnx.export(M(), (x,), "model.onnx", opset_version=11, input_names=["x"],
                  output_names=[f"o{i}" for i in range(7)],
                  dynamic_axes={"x": {0: "n"}}, **TS)
np.savez("io.npz", x=x.numpy(), **{f"o{i}": o.numpy() for i, o in enumerate(M()(x))})
"""


@torchscript_only(DYNAMIC_SIZES)
def test_ncnn_flatten_expand_chunk_have_no_shape_computation(tmp_path):
    run = run_script(tmp_path, NCNN, backend="ncnn").check()
    ops = run.ops()
    # The batch axis is dynamic, and still no shape is computed.
    assert "Shape" not in ops and "Gather" not in ops and "Split" not in ops, ops
    assert "Flatten" in ops  # flatten(1) stays ONNX's Flatten
    io = np.load(run.path("io.npz"))
    outs = ort_run(run.path("model.onnx"), {"x": io["x"]})
    assert len(outs) == 7
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, io[f"o{i}"], rtol=1e-6, err_msg=str(i))
    # The reshape keeps the batch axis out: 0 (copy) in the constant shape.
    x2 = np.random.default_rng(0).standard_normal((3, 7, 3, 4)).astype(np.float32)
    a = ort_run(run.path("model.onnx"), {"x": x2})[0]
    np.testing.assert_allclose(a, x2.reshape(3, 7, 12), rtol=1e-6)


def test_other_backends_keep_shape_computations(tmp_path):
    run = run_script(tmp_path, NCNN, backend="tensorrt").check()
    assert "Shape" in run.ops()
