#!/usr/bin/python3
"""Writes the ONNX files that tests/onnx/run.sh feeds to `torchrw`.

Usage: /usr/bin/python3 make_models.py OUTDIR

Valid models are built with the onnx helper API; broken ones are made by
damaging valid ones.  Nothing here is committed: run.sh calls this into a
temporary directory.
"""
import os
import random
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper


def model(nodes, inputs, outputs, inits=(), opset=13, extra_opsets=(),
          value_info=()):
    graph = h.make_graph(nodes, "g", inputs, outputs, list(inits),
                         value_info=list(value_info))
    opsets = [h.make_opsetid("", opset)] + [h.make_opsetid(d, v)
                                            for d, v in extra_opsets]
    m = h.make_model(graph, opset_imports=opsets, producer_name="torchrw-tests",
                     producer_version="1")
    m.ir_version = 8
    return m


def weight(name, shape, seed):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32),
                                   name)


def convnet(batch=1):
    """A small conv net: Conv, Relu, MaxPool, Conv, GlobalAveragePool,
    Flatten, Gemm.  batch may be a number or a symbolic name."""
    x = h.make_tensor_value_info("input", T.FLOAT, [batch, 3, 32, 32])
    y = h.make_tensor_value_info("logits", T.FLOAT, [batch, 10])
    inits = [weight("conv1.weight", (8, 3, 3, 3), 1),
             weight("conv1.bias", (8,), 2),
             weight("conv2.weight", (16, 8, 3, 3), 3),
             weight("conv2.bias", (16,), 4),
             weight("fc.weight", (10, 16), 5),
             weight("fc.bias", (10,), 6)]
    nodes = [
        h.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"],
                    name="conv1", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        h.make_node("MaxPool", ["r1"], ["p1"], name="pool1",
                    kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"],
                    name="conv2", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        h.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        h.make_node("Flatten", ["g"], ["f"], name="flatten"),
        h.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"],
                    name="fc", transB=1),
    ]
    return model(nodes, [x], [y], inits)


def symbolic():
    """Symbolic dimensions and a Shape op."""
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])
    y = h.make_tensor_value_info("y", T.FLOAT, ["N", 3, "H", "W"])
    s = h.make_tensor_value_info("s", T.INT64, [4])
    nodes = [h.make_node("Relu", ["x"], ["y"], name="relu"),
             h.make_node("Shape", ["y"], ["s"], name="shape")]
    return model(nodes, [x], [y, s])


def topk(k=None, k_value=5, width=100):
    """TopK with K as an initializer (k_value) or as a graph input."""
    x = h.make_tensor_value_info("scores", T.FLOAT, [1, width])
    vals = h.make_tensor_value_info("values", T.FLOAT, [1, None])
    idx = h.make_tensor_value_info("indices", T.INT64, [1, None])
    inputs, inits = [x], []
    if k == "input":
        inputs.append(h.make_tensor_value_info("k", T.INT64, [1]))
    else:
        inits.append(numpy_helper.from_array(np.array([k_value], np.int64), "k"))
    node = h.make_node("TopK", ["scores", "k"], ["values", "indices"],
                       name="topk", axis=1)
    return model([node], inputs, [vals, idx], inits, opset=11)


def concat_bool(dynamic):
    dim = "N" if dynamic else 2
    a = h.make_tensor_value_info("a", T.BOOL, [dim, 4])
    b = h.make_tensor_value_info("b", T.BOOL, [dim, 4])
    y = h.make_tensor_value_info("y", T.BOOL, [None, 4])
    node = h.make_node("Concat", ["a", "b"], ["y"], name="cat_mask", axis=0)
    return model([node], [a, b], [y])


def custom_domain():
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 8])
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("FancyNorm", ["r"], ["y"], name="fancy",
                         domain="com.example", eps=1e-5)]
    return model(nodes, [x], [y], extra_opsets=[("com.example", 1)])


def resize_cubic():
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 3, 16, 16])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32),
                                     "scales")
    node = h.make_node("Resize", ["x", "", "scales"], ["y"], name="up",
                       mode="cubic")
    return model([node], [x], [y], [scales])


def reshape(shape, as_constant_node=False):
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 6, 80])
    y = h.make_tensor_value_info("y", T.FLOAT, shape)
    value = numpy_helper.from_array(np.array(shape, np.int64), "shape")
    if as_constant_node:
        const = h.make_node("Constant", [], ["shape"], name="shape", value=value)
        return model([const, h.make_node("Reshape", ["x", "shape"], ["y"], name="r")], [x], [y])
    return model([h.make_node("Reshape", ["x", "shape"], ["y"], name="r")], [x], [y], [value])


def reshape_computed(declared):
    """Reshape to Shape(z): the shape is computed; its length (5) is
    declared in value_info, or follows from z's declared rank."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 6, 80])
    z = h.make_tensor_value_info("z", T.FLOAT, [1, 6, 8, 2, 5])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 6, 8, 2, 5])
    shape = [h.make_tensor_value_info("shape", T.INT64, [5])] if declared else []
    nodes = [h.make_node("Shape", ["z"], ["shape"], name="s"),
             h.make_node("Reshape", ["x", "shape"], ["y"], name="r")]
    return model(nodes, [x, z], [y], value_info=shape)


def tile_repeats(kind):
    """Tile of a 4-D x (2,3,4,5) by repeats that are "folded" (Shape(x) +
    1: known once the input shape is), "fixed" (the same of Relu(x), whose
    shape the file does not declare), "nonzero" ((1, 2, 2, k), k the count
    of x's positive elements: NonZero's shape) or "data" (computed from
    x's values: 2 + max(x), cast).  ONNX's test_tile feeds them as an
    input."""
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3, 4, 5])
    y = h.make_tensor_value_info("y", T.FLOAT, None)
    inputs, inits = [x], []
    if kind in ("folded", "fixed"):
        inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
        nodes = [h.make_node("Relu", ["x"], ["r"], name="relu")] if kind == "fixed" else []
        nodes += [h.make_node("Shape", ["r" if kind == "fixed" else "x"], ["shape"],
                              name="shape"),
                  h.make_node("Add", ["shape", "one"], ["repeats"], name="add")]
    elif kind == "nonzero":
        inits += [numpy_helper.from_array(np.array([1, 2, 2], np.int64), "ones"),
                  numpy_helper.from_array(np.array([1], np.int64), "one"),
                  numpy_helper.from_array(np.array([2], np.int64), "two")]
        nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
                 h.make_node("NonZero", ["r"], ["nz"], name="nonzero"),
                 h.make_node("Shape", ["nz"], ["nzs"], name="shape"),
                 h.make_node("Slice", ["nzs", "one", "two"], ["k"], name="count"),
                 h.make_node("Concat", ["ones", "k"], ["repeats"], name="cat", axis=0)]
    else:
        inits.append(numpy_helper.from_array(np.full(4, 2.0, np.float32), "two"))
        nodes = [h.make_node("ReduceMax", ["x"], ["max"], name="max", keepdims=0),
                 h.make_node("Add", ["max", "two"], ["sum"], name="add"),
                 h.make_node("Cast", ["sum"], ["repeats"], name="cast", to=T.INT64)]
    nodes.append(h.make_node("Tile", ["x", "repeats"], ["y"], name="tile"))
    return model(nodes, inputs, [y], inits)


def split_num_outputs(opset):
    """Split of Relu(x) into two by the num_outputs attribute, which ONNX
    added in Split-18: at 17 the file is not valid ONNX (torch 2.14's
    torch.export exporter writes it when converting 18 down to 17)."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4, 6])
    outs = [h.make_tensor_value_info(n, T.FLOAT, [1, 2, 6]) for n in ("a", "b")]
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Split", ["r"], ["a", "b"], name="split", axis=1,
                         num_outputs=2)]
    return model(nodes, [x], outs, opset=opset)


def shape_only():
    """Shape of a static x as the only output: a converter that folds
    shapes computes all of it."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 3, 4])
    y = h.make_tensor_value_info("y", T.INT64, [3])
    return model([h.make_node("Shape", ["x"], ["y"], name="shape")], [x], [y])


def gather(indices):
    """Gather on axis 1 of Relu(x), x (1,17,8), by constant indices (a 0-d
    index: vit's x[:, 0])."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 17, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, None)
    idx = numpy_helper.from_array(np.array(indices, np.int64), "indices")
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Gather", ["r", "indices"], ["y"], name="gather", axis=1)]
    return model(nodes, [x], [y], [idx])


def embedding(table):
    """Token ids (an int64 input) looked up in a (10, 4) table: a constant
    (an embedding, ncnn's Embed) or a graph input."""
    ids = h.make_tensor_value_info("ids", T.INT64, [1, 3])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 3, 4])
    inputs, inits = [ids], []
    if table == "constant":
        inits.append(weight("table", (10, 4), 3))
    else:
        inputs.append(h.make_tensor_value_info("table", T.FLOAT, [10, 4]))
    nodes = [h.make_node("Gather", ["table", "ids"], ["y"], name="lookup")]
    return model(nodes, inputs, [y], inits)


def class_token(from_data):
    """vit's class token, cls.expand(N, -1, -1) as torch's exporter writes
    it (ConstantOfShape, Equal and Where on the target shape), Concatenated
    before x.  The target shape comes from Shape(x), or, from_data, from
    x's values (its batch is 1 + 0 * floor(max(x)))."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 5, 8])
    inits = [weight("cls", [1, 1, 8], 7),
             numpy_helper.from_array(np.array([-1, -1], np.int64), "rest"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    if from_data:
        inits.append(numpy_helper.from_array(np.array([0.0], np.float32), "nought"))
        inits.append(numpy_helper.from_array(np.array([1.0], np.float32), "unit"))
        batch = [h.make_node("ReduceMax", ["x"], ["max"], name="max", keepdims=0),
                 h.make_node("Floor", ["max"], ["fl"], name="floor"),
                 h.make_node("Mul", ["fl", "nought"], ["z"], name="zero_it"),
                 h.make_node("Add", ["z", "unit"], ["nf"], name="plus_one"),
                 h.make_node("Cast", ["nf"], ["n"], name="cast", to=T.INT64)]
    else:
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero_i"))
        batch = [h.make_node("Shape", ["x"], ["xs"], name="shape"),
                 h.make_node("Gather", ["xs", "zero_i"], ["n"], name="batch", axis=0)]
    nodes = batch + [
        h.make_node("Concat", ["n", "rest"], ["target"], name="target", axis=0),
        h.make_node("Shape", ["target"], ["tlen"], name="tlen"),
        h.make_node("ConstantOfShape", ["tlen"], ["ones"], name="ones",
                    value=numpy_helper.from_array(np.array([1], np.int64))),
        h.make_node("Mul", ["ones", "minus_one"], ["minus"], name="minus"),
        h.make_node("Equal", ["target", "minus"], ["keep"], name="keep"),
        h.make_node("Where", ["keep", "ones", "target"], ["size"], name="size"),
        h.make_node("Expand", ["cls", "size"], ["tok"], name="expand"),
        h.make_node("Concat", ["tok", "x"], ["y"], name="cat", axis=1)]
    return model(nodes, [x], [y], inits)


def reshape_concat_6d():
    """Reshape to (N, 6, 2, 4, 2, 5) as TorchScript's exporter writes a
    view of sizes: N = Shape(Relu(x))[0] Unsqueezed, Concatenated with
    constants.  The file declares no value_info: the shape's length (6)
    follows from the Concat's parts (swin's window partition)."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 6, 8, 10])
    y = h.make_tensor_value_info("y", T.FLOAT, None)
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([6, 2, 4, 2, 5], np.int64), "rest")]
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"),
             h.make_node("Shape", ["r"], ["s"], name="shape"),
             h.make_node("Gather", ["s", "zero"], ["n"], name="batch", axis=0),
             h.make_node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0]),
             h.make_node("Concat", ["n1", "rest"], ["target"], name="target", axis=0),
             h.make_node("Reshape", ["r", "target"], ["y"], name="r6")]
    return model(nodes, [x], [y], inits, opset=11)


def dropout_training(mode):
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3])
    y = h.make_tensor_value_info("y", T.FLOAT, [2, 3])
    ratio = numpy_helper.from_array(np.array(0.0, np.float32), "ratio")
    training = numpy_helper.from_array(np.array(mode, np.bool_), "training_mode")
    node = h.make_node("Dropout", ["x", "ratio", "training_mode"], ["y"], name="drop")
    return model([node], [x], [y], [ratio, training])


def loop_concat(start):
    """A Loop of 3 iterations whose one loop-carried value gets row i of x
    Concatenated each iteration (torchvision's mask pasting in small).
    start: "empty" (a (0,4) Constant), "row" (a (1,4) Constant) or
    "computed" (x[0:0], a Slice: empty at run time, not in the file)."""
    body = h.make_graph(
        [h.make_node("Gather", ["x", "i"], ["row"], axis=0),
         h.make_node("Unsqueeze", ["row"], ["row1"], axes=[0]),
         h.make_node("Identity", ["cond"], ["cond_out"]),
         h.make_node("Concat", ["v", "row1"], ["v_out"], axis=0)],
        "body",
        [h.make_tensor_value_info("i", T.INT64, []),
         h.make_tensor_value_info("cond", T.BOOL, []),
         h.make_tensor_value_info("v", T.FLOAT, ["n", 4])],
        [h.make_tensor_value_info("cond_out", T.BOOL, []),
         h.make_tensor_value_info("v_out", T.FLOAT, ["k", 4])])
    x = h.make_tensor_value_info("x", T.FLOAT, [3, 4])
    y = h.make_tensor_value_info("y", T.FLOAT, ["k", 4])
    inits = [numpy_helper.from_array(np.array(3, np.int64), "trips"),
             numpy_helper.from_array(np.array([0], np.int64), "zero")]
    nodes = [h.make_node("Constant", [], ["cond0"],
                         value=numpy_helper.from_array(np.array(True)))]
    if start == "computed":
        nodes.append(h.make_node("Slice", ["x", "zero", "zero", "zero"], ["v0"]))
    else:
        rows = 0 if start == "empty" else 1
        nodes.append(h.make_node("Constant", [], ["v0"], value=numpy_helper.from_array(
            np.ones((rows, 4), np.float32))))
    nodes.append(h.make_node("Loop", ["trips", "cond0", "v0"], ["y"], name="loop",
                             body=body))
    return model(nodes, [x], [y], inits, opset=11)


def scatternd(form):
    """An opset-11 ScatterND that writes rows 0 and 2 of d, a slice of x
    (6,4,5) along its last axis, Concatenated onto x: torch.export's exporter
    writes torchvision swin3d_t's shifted-window attention mask so, with
    slices of zero width.  form: "empty_updates" (d = x[:, :, 0:0], updates
    an initializer (2,4,0), as in swin3d_t's file), "updates" (d = x[:, :, 0:1],
    an initializer (2,4,1)), "computed_empty_updates" (d = x[:, :, 0:0],
    updates d[0:2]: empty at run time, not in the file) or "empty_indices"
    (d = x, indices a Constant node (0,1), updates x[0:0])."""
    x = h.make_tensor_value_info("x", T.FLOAT, [6, 4, 5])
    const = lambda name, a: h.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(a, name))
    ints = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    width = 1 if form == "updates" else 0
    inits = [ints("zero", [0])]
    nodes = []
    if form == "empty_indices":
        data = "x"
        nodes += [const("i", np.zeros((0, 1), np.int64)),
                  h.make_node("Slice", ["x", "zero", "zero", "zero"], ["u"])]
    else:
        data = "d"
        inits += [ints("width", [width]), ints("two", [2])]
        nodes += [h.make_node("Slice", ["x", "zero", "width", "two"], ["d"]),
                  const("i", np.array([[0], [2]], np.int64))]
        if form == "computed_empty_updates":
            nodes.append(h.make_node("Slice", ["d", "zero", "two", "zero"], ["u"]))
        else:
            inits.append(numpy_helper.from_array(np.ones((2, 4, width), np.float32), "u"))
    nodes += [h.make_node("ScatterND", [data, "i", "u"], ["s"], name="scatter"),
              h.make_node("Concat", ["x", "s"], ["y"], axis=2)]
    y = h.make_tensor_value_info(
        "y", T.FLOAT, [6, 4, 10] if form == "empty_indices" else [6, 4, 5 + width])
    return model(nodes, [x], [y], inits, opset=11)


def slice_steps(step):
    """x[:, ::2, ::2] of an NHWC tensor, as timm's LeViT Downsample takes
    it: two Slices with constant steps; with step 1, x[:, 1:, 1:] (from 0
    with step 1 the Slices do nothing, and pnnx leaves no graph)."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4, 4, 8])
    start = 1 if step == 1 else 0
    n = (4 - start + step - 1) // step
    y = h.make_tensor_value_info("y", T.FLOAT, [1, n, n, 8])
    c = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    inits = [c("starts", [start]), c("ends", [2**63 - 1]), c("ax1", [1]), c("ax2", [2]),
             c("steps", [step])]
    nodes = [h.make_node("Slice", ["x", "starts", "ends", "ax1", "steps"], ["h"], name="s1"),
             h.make_node("Slice", ["h", "starts", "ends", "ax2", "steps"], ["y"], name="s2")]
    return model(nodes, [x], [y], inits)


def cast(kind):
    """A Cast to float: of the float input itself (a no-op, as CLIP's
    pixel_values.to(dtype)), of a float value computed from it (Relu),
    or of an int64 input through Unsqueeze (a BERT-style mask), each
    then multiplied into the float input."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4, 8])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 4, 8])
    if kind == "int64":
        m = h.make_tensor_value_info("m", T.INT64, [1, 8])
        axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
        nodes = [h.make_node("Unsqueeze", ["m", "axes"], ["mu"], name="u"),
                 h.make_node("Cast", ["mu"], ["mf"], name="cast", to=T.FLOAT),
                 h.make_node("Mul", ["x", "mf"], ["y"], name="mul")]
        return model(nodes, [x, m], [y], [axes])
    src = "x"
    nodes = []
    if kind == "computed":
        nodes.append(h.make_node("Relu", ["x"], ["r"], name="relu"))
        src = "r"
    nodes += [h.make_node("Cast", [src], ["c"], name="cast", to=T.FLOAT),
              h.make_node("Mul", ["x", "c"], ["y"], name="mul")]
    return model(nodes, [x], [y])


def upsample_opset11():
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 1, 2, 2])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 1, 4, 4])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32),
                                     "scales")
    node = h.make_node("Upsample", ["x", "scales"], ["y"], name="up",
                       mode="nearest")
    return model([node], [x], [y], [scales], opset=11)


def resize_antialias():
    """An opset-18 linear downsampling Resize with antialias=1."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 1, 4, 4])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 1, 2, 2])
    scales = numpy_helper.from_array(np.array([1, 1, 0.5, 0.5], np.float32),
                                     "scales")
    node = h.make_node("Resize", ["x", "", "scales"], ["y"], name="down",
                       mode="linear", antialias=1)
    return model([node], [x], [y], [scales], opset=18)


def scatter_opset11():
    """Scatter, which ONNX deprecated at opset 11 (ScatterElements)."""
    d = h.make_tensor_value_info("d", T.FLOAT, [3, 3])
    i = h.make_tensor_value_info("i", T.INT64, [2, 3])
    u = h.make_tensor_value_info("u", T.FLOAT, [2, 3])
    y = h.make_tensor_value_info("y", T.FLOAT, [3, 3])
    node = h.make_node("Scatter", ["d", "i", "u"], ["y"], name="scatter",
                       axis=0)
    return model([node], [d, i, u], [y], opset=11)


def shape_reshape():
    """nn.GroupNorm(2, 4) as torch exports it at opset 11: Reshape to
    groups, InstanceNormalization, Reshape back to Shape(x) (a shape computed
    at run time, which pnnx folds for the static input shape), Mul, Add."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4, 6, 6])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 4, 6, 6])
    groups = numpy_helper.from_array(np.array([0, 2, -1], np.int64), "groups")
    ones = numpy_helper.from_array(np.ones(2, np.float32), "ones")
    zeros = numpy_helper.from_array(np.zeros(2, np.float32), "zeros")
    nodes = [h.make_node("Constant", [], ["g"], value=groups),
             h.make_node("Reshape", ["x", "g"], ["a"], name="to_groups"),
             h.make_node("Constant", [], ["o"], value=ones),
             h.make_node("Constant", [], ["z"], value=zeros),
             h.make_node("InstanceNormalization", ["a", "o", "z"], ["b"],
                         name="norm", epsilon=1e-5),
             h.make_node("Shape", ["x"], ["s"], name="shape"),
             h.make_node("Reshape", ["b", "s"], ["c"], name="back"),
             h.make_node("Mul", ["c", "w"], ["d"], name="scale"),
             h.make_node("Add", ["d", "bias"], ["y"], name="shift")]
    return model(nodes, [x], [y], [weight("w", [4, 1, 1], 7),
                                   weight("bias", [4, 1, 1], 8)], opset=11)


def reduce_mean(opset, axes=(1,)):
    """ReduceMean over axes (keepdims): an attribute until opset 17, an
    input (here an initializer) from opset 18."""
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 4, 2, 2])
    y = h.make_tensor_value_info("y", T.FLOAT, [1 if i in axes else n for i, n in enumerate([1, 4, 2, 2])])
    if opset < 18:
        node = h.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=list(axes))
        return model([node], [x], [y], opset=opset)
    axes = numpy_helper.from_array(np.array(axes, np.int64), "axes")
    node = h.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean")
    return model([node], [x], [y], [axes], opset=opset)


def unsqueeze_axes_input():
    """An opset-13 Unsqueeze whose axes are a graph input."""
    x = h.make_tensor_value_info("x", T.FLOAT, [3, 4])
    a = h.make_tensor_value_info("axes", T.INT64, [1])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, 3, 4])
    node = h.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsq")
    return model([node], [x, a], [y], opset=13)


def swish(opset):
    """ONNX's Swish (added at opset 24), imported at the given opset."""
    x = h.make_tensor_value_info("x", T.FLOAT, [3])
    y = h.make_tensor_value_info("y", T.FLOAT, [3])
    node = h.make_node("Swish", ["x"], ["y"], name="swish", alpha=1.0)
    return model([node], [x], [y], opset=opset)


def nested_if(depth):
    """If nodes nested depth deep: each then-branch holds the next level,
    each else-branch a constant."""
    def leaf(level):
        out = h.make_tensor_value_info("o%d" % level, T.FLOAT, [1])
        c = numpy_helper.from_array(np.array([1.0], np.float32), "v")
        node = h.make_node("Constant", [], ["o%d" % level], value=c)
        return h.make_graph([node], "leaf", [], [out])

    def branch(level):
        if level == 0:
            return leaf(0)
        out = h.make_tensor_value_info("o%d" % level, T.FLOAT, [1])
        node = h.make_node("If", ["cond"], ["o%d" % level],
                           then_branch=branch(level - 1),
                           else_branch=leaf(level))
        return h.make_graph([node], "b%d" % level, [], [out])
    cond = h.make_tensor_value_info("cond", T.BOOL, [])
    top = branch(depth)
    y = h.make_tensor_value_info("y", T.FLOAT, [1])
    node = h.make_node("If", ["cond"], ["y"], name="top",
                       then_branch=top, else_branch=leaf(depth + 1))
    return model([node], [cond], [y])


def big_external(dirpath, gib=4):
    """A MatMul whose weight is gib GiB in an external file.  The file is
    sparse (truncated to size), so nothing that big is ever written; a tool
    that read the weights would take seconds and gib GiB of memory."""
    os.makedirs(dirpath, exist_ok=True)
    cols = 1024
    rows = gib * (1 << 30) // (4 * cols)
    w = onnx.TensorProto()
    w.name = "big.weight"
    w.data_type = T.FLOAT
    w.dims.extend([rows, cols])
    w.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", "big.bin"), ("offset", "0"),
                 ("length", str(rows * cols * 4))):
        e = w.external_data.add()
        e.key, e.value = k, v
    with open(os.path.join(dirpath, "big.bin"), "wb") as f:
        f.truncate(rows * cols * 4)
    x = h.make_tensor_value_info("x", T.FLOAT, [1, rows])
    y = h.make_tensor_value_info("y", T.FLOAT, [1, cols])
    node = h.make_node("MatMul", ["x", "big.weight"], ["y"], name="mm")
    onnx.save_model(model([node], [x], [y], [w]),
                    os.path.join(dirpath, "big.onnx"))


def save(m, path):
    onnx.save_model(m, path)


def save_external(m, dirpath, name, location="weights.bin"):
    os.makedirs(dirpath, exist_ok=True)
    onnx.save_model(m, os.path.join(dirpath, name), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location,
                    size_threshold=0)


def set_location(path, location):
    """Rewrites every external data location in path, without loading the
    weights."""
    m = onnx.load_model(path, load_external_data=False)
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = location
    onnx.save_model(m, path)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    p = lambda n: os.path.join(out, n)

    save(convnet(), p("convnet.onnx"))
    save(convnet("batch"), p("convnet_dynamic.onnx"))
    save(symbolic(), p("symbolic.onnx"))
    save(topk(), p("topk_const.onnx"))
    save(topk("input"), p("topk_input.onnx"))
    save(topk(k_value=5000, width=10000), p("topk_big.onnx"))
    save(concat_bool(True), p("concat_bool_dynamic.onnx"))
    save(concat_bool(False), p("concat_bool_static.onnx"))
    save(custom_domain(), p("custom_domain.onnx"))
    save(resize_cubic(), p("resize_cubic.onnx"))
    save(upsample_opset11(), p("upsample_opset11.onnx"))
    save(slice_steps(1), p("slice_step1.onnx"))
    save(slice_steps(2), p("slice_step2.onnx"))
    save(cast("input"), p("cast_float_input.onnx"))
    save(cast("computed"), p("cast_float_computed.onnx"))
    save(cast("int64"), p("cast_int64_mask.onnx"))
    save(dropout_training(True), p("dropout_training.onnx"))
    save(dropout_training(False), p("dropout_inference.onnx"))
    save(reshape([1, 6, 8, 10]), p("reshape_4d.onnx"))
    save(reshape([1, 6, 8, 2, 5]), p("reshape_5d.onnx"))
    save(reshape([1, 6, 4, 2, 2, 5], as_constant_node=True), p("reshape_6d_constant.onnx"))
    save(reshape_computed(True), p("reshape_5d_computed.onnx"))
    save(reshape_computed(False), p("reshape_5d_computed_undeclared.onnx"))
    save(reshape_concat_6d(), p("reshape_6d_concat.onnx"))
    save(resize_antialias(), p("resize_antialias.onnx"))
    save(loop_concat("empty"), p("loop_empty_initial.onnx"))
    save(loop_concat("row"), p("loop_initial.onnx"))
    save(loop_concat("computed"), p("loop_computed_initial.onnx"))
    save(tile_repeats("folded"), p("tile_repeats_folded.onnx"))
    save(tile_repeats("fixed"), p("tile_repeats_fixed.onnx"))
    save(tile_repeats("nonzero"), p("tile_repeats_nonzero.onnx"))
    save(tile_repeats("data"), p("tile_repeats_data.onnx"))
    save(split_num_outputs(17), p("split_num_outputs_opset17.onnx"))
    save(split_num_outputs(18), p("split_num_outputs_opset18.onnx"))
    save(shape_only(), p("shape_only.onnx"))
    save(gather(0), p("gather_scalar.onnx"))
    save(gather([0, 2]), p("gather_vector.onnx"))
    save(embedding("constant"), p("gather_embedding.onnx"))
    save(embedding("input"), p("gather_table_input.onnx"))
    save(class_token(False), p("class_token.onnx"))
    save(class_token(True), p("class_token_data.onnx"))
    save(scatternd("empty_updates"), p("scatternd_empty_updates.onnx"))
    save(scatternd("empty_indices"), p("scatternd_empty_indices.onnx"))
    save(scatternd("updates"), p("scatternd_updates.onnx"))
    save(scatternd("computed_empty_updates"), p("scatternd_computed_empty_updates.onnx"))
    save(scatter_opset11(), p("scatter_opset11.onnx"))
    save(shape_reshape(), p("shape_reshape.onnx"))
    save(reduce_mean(17), p("reduce_mean_opset17.onnx"))
    save(reduce_mean(18), p("reduce_mean_opset18.onnx"))
    save(reduce_mean(18, (2, 3)), p("reduce_mean_two_axes_opset18.onnx"))
    save(unsqueeze_axes_input(), p("unsqueeze_axes_input.onnx"))
    save(swish(24), p("swish_opset24.onnx"))
    save(swish(27), p("swish_opset27.onnx"))
    save(nested_if(4), p("nested_ok.onnx"))
    save(nested_if(40), p("nested_deep.onnx"))

    # External data: a model whose weights all live in weights.bin.
    save_external(convnet(), p("ext"), "external.onnx")
    big_external(p("big"))
    # The same, then broken in each way a reference can point nowhere.
    for case in ("missing", "short", "escape", "absolute", "symlink"):
        d = p("ext_" + case)
        save_external(convnet(), d, "model.onnx")
        weights = os.path.join(d, "weights.bin")
        if case == "missing":
            os.remove(weights)
        elif case == "short":
            with open(weights, "r+b") as f:
                f.truncate(os.path.getsize(weights) // 2)
        elif case == "escape":
            os.rename(weights, os.path.join(out, "escaped.bin"))
            set_location(os.path.join(d, "model.onnx"), "../escaped.bin")
        elif case == "absolute":
            set_location(os.path.join(d, "model.onnx"), os.path.abspath(weights))
        elif case == "symlink":
            # A plain name, but a symbolic link that leads out of the directory.
            os.rename(weights, os.path.join(out, "linked.bin"))
            os.symlink(os.path.abspath(os.path.join(out, "linked.bin")), weights)

    # In-file data shorter than the tensor's shape and type need.
    short = convnet()
    w = short.graph.initializer[0]
    w.raw_data = w.raw_data[: len(w.raw_data) // 2]
    with open(p("raw_short.onnx"), "wb") as f:
        f.write(short.SerializeToString())

    # Broken files.
    good = convnet().SerializeToString()
    with open(p("truncated.onnx"), "wb") as f:
        f.write(good[: len(good) // 2])
    with open(p("truncated_graph.onnx"), "wb") as f:
        f.write(good[:24])
    rng = random.Random(5)
    with open(p("random.onnx"), "wb") as f:
        f.write(bytes(rng.randrange(256) for _ in range(4096)))
    with open(p("corrupted.onnx"), "wb") as f:
        f.write(good[:40] + bytes(rng.randrange(256) for _ in range(2000)))
    open(p("empty.onnx"), "wb").close()
    with open(p("text.onnx"), "w") as f:
        f.write("this is not an ONNX model\n")
    os.makedirs(p("a_directory.onnx"), exist_ok=True)


if __name__ == "__main__":
    main()
