"""Converting torch.export's ONNX graph down to the opset the export asked
for (torch.onnx.export(..., opset_version=N) with N below 18).

torch.onnx's exporter on torch.export builds every graph at opset 18 and
then asks onnxscript to convert it down (torch/onnx/_internal/exporter/
_core.py).  Below 18 onnxscript hands the model to ONNX's C version
converter, before any constant folding.  That converter refuses nearly
every real graph: a ReduceMean whose axes come from a Reshape of a
Constant (torchlib's mean.dim), and ops without a down adapter (Relu 14,
Pow 15).  The export then logs a traceback and keeps opset 18, which
TensorRT's and ncnn's parsers do not take at those operators.

This converter works node by node on the model torch hands over, with
ONNX's operator schemas as the reference: an operator whose schema did not
change between the target opset and the node's own is kept; one whose
change is only new types or attributes left at their defaults is kept once
its input types are checked against the older schema; the rest have an
adapter below (axes as an input become the attribute, Shape's start/end a
Slice, CastLike a Cast, ...).  It first plans every node; if one cannot be
expressed at the target opset, nothing is changed and the reason is
returned, so the caller can leave the model to torch's converter.

Part of the torch adapter (torch 2.9 to 2.14 and the onnx_ir/onnxscript
they use).  The runtime compiles it in and runs it as
torchrw._opset_conversion.
"""
import numpy as np
import onnx
import onnx.defs
import onnx_ir as ir

INT64_MAX = np.iinfo(np.int64).max

# Ops torch's graph at 18 uses that the schemas alone do not settle.
_ADAPTERS = {}


def _adapter(*ops):
    def register(fn):
        for op in ops:
            _ADAPTERS[op] = fn
        return fn
    return register


class Refused(Exception):
    """A node that cannot be written at the target opset: why."""


class _Untyped(Refused):
    """A node whose conversion needs a type the graph does not record yet."""


def _schema(op, version):
    try:
        return onnx.defs.get_schema(op, version, "")
    except onnx.defs.SchemaError:
        return None


def _where(node):
    return f"{node.op_type} node '{node.name or '?'}'"


def _const(value):
    """A value's constant as a numpy array, or None."""
    if value is None:
        return None
    t = ir.convenience.get_const_tensor(value)
    return None if t is None else t.numpy()


def _int_list(value, node, what):
    a = _const(value)
    if a is None:
        raise Refused(f"{_where(node)}: its {what} are computed, not constant")
    return [int(x) for x in np.asarray(a).reshape(-1)]


def _rank(value):
    shape = value.shape if value is not None else None
    return None if shape is None else len(shape)


# Every node made while planning, so that a refused plan can let go of its
# inputs (a node holds its inputs' uses from the moment it is made).
_made = []


def _node(op_type, inputs, attributes=(), num_outputs=1, name=None, version=None):
    node = ir.Node("", op_type, inputs, attributes, num_outputs=num_outputs, name=name,
                   version=version)
    _made.append(node)
    return node


def _constant_node(array):
    return _node("Constant", [], [ir.AttrTensor("value", ir.tensor(np.asarray(array)))])


class _Plan:
    """The changes to the model's graphs, applied only once every node is
    planned."""

    def __init__(self):
        self.steps = []

    def replace(self, graph, node, new_nodes, new_outputs):
        self.steps.append(("replace", graph, node, new_nodes, new_outputs))

    def edit(self, fn):
        self.steps.append(("edit", fn))

    def apply(self):
        for step in self.steps:
            if step[0] == "edit":
                step[1]()
                continue
            _, graph, node, new_nodes, new_outputs = step
            ir.convenience.replace_nodes_and_values(
                graph, node, [node], new_nodes, list(node.outputs), new_outputs)


def _like(node, op_type, inputs, attributes, extra=()):
    """A node like `node` (name, outputs count) as op_type, after `extra`."""
    new = _node(op_type, inputs, attributes, num_outputs=len(node.outputs), name=node.name)
    return list(extra) + [new], list(new.outputs)


def _attrs(node, drop=()):
    return [a for name, a in node.attributes.items() if name not in drop]


# --------------------------------------------------------------------------
# Adapters: each returns (new_nodes, new_outputs) or None (node kept), and
# raises Refused when the node cannot be written at `target`.

@_adapter("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ReduceSum",
          "Squeeze", "Unsqueeze")
def _axes_to_attribute(node, target, older):
    """Opset 13 (ReduceSum, Squeeze, Unsqueeze) and 18 (the other
    reductions) made axes an input; before, it is an attribute."""
    if "axes" not in older.attributes or len(node.inputs) < 2:
        return None
    attrs = _attrs(node, drop=("noop_with_empty_axes",))
    values = _int_list(node.inputs[1], node, "axes") if node.inputs[1] is not None else []
    noop = node.attributes.get("noop_with_empty_axes")  # reductions only
    if values:
        attrs.append(ir.AttrInt64s("axes", values))
    elif noop is not None and noop.value:
        raise Refused(f"{_where(node)}: no axes with noop_with_empty_axes=1")
    return _like(node, node.op_type, [node.inputs[0]], attrs)


@_adapter("Split")
def _split(node, target, older):
    """Opset 13 made split an input, 18 added num_outputs; before 13, split
    is an attribute; before 18, no split means equal parts."""
    sizes = None
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        if "split" not in older.attributes:
            return None
        sizes = _int_list(node.inputs[1], node, "split sizes")
    elif "num_outputs" in node.attributes:
        axis = node.attributes["axis"].value if "axis" in node.attributes else 0
        shape = node.inputs[0].shape
        n = len(node.outputs)
        size = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
        if not isinstance(size, int):
            raise Refused(f"{_where(node)}: num_outputs over a dim of unknown size")
        part = -(-size // n)
        sizes = [part] * (n - 1) + [size - part * (n - 1)]
    else:
        return None
    attrs = _attrs(node, drop=("num_outputs",))
    if "split" in older.attributes:
        return _like(node, "Split", [node.inputs[0]], attrs + [ir.AttrInt64s("split", sizes)])
    c = _constant_node(np.array(sizes, dtype=np.int64))
    return _like(node, "Split", [node.inputs[0], c.outputs[0]], attrs, extra=[c])


@_adapter("Shape")
def _shape(node, target, older):
    """Opset 15 gave Shape start and end; before, a Slice of the shape."""
    start = node.attributes["start"].value if "start" in node.attributes else 0
    end = node.attributes["end"].value if "end" in node.attributes else None
    if start == 0 and end is None:
        return None
    shape = _node("Shape", [node.inputs[0]])
    consts = [_constant_node(np.array([v], dtype=np.int64))
              for v in (start, INT64_MAX if end is None else end, 0)]
    inputs = [shape.outputs[0]] + [c.outputs[0] for c in consts]
    return _like(node, "Slice", inputs, [], extra=[shape] + consts)


@_adapter("CastLike")
def _cast_like(node, target, older):
    """CastLike (opset 15) is a Cast to its second input's type."""
    dtype = node.inputs[1].dtype if node.inputs[1] is not None else None
    if dtype is None:
        raise _Untyped(f"{_where(node)}: the type to cast to is not known")
    return _like(node, "Cast", [node.inputs[0]], [ir.AttrInt64("to", int(dtype))])


@_adapter("Constant")
def _constant(node, target, older):
    """Opset 12 added value_float(s)/value_int(s)/value_string(s); before,
    a tensor."""
    (name, attr), = node.attributes.items()
    if name in older.attributes:
        return None
    kinds = {"value_float": np.float32, "value_floats": np.float32,
             "value_int": np.int64, "value_ints": np.int64}
    if name not in kinds:
        raise Refused(f"{_where(node)}: a {name} constant")
    array = np.array(attr.value, dtype=kinds[name])
    return _like(node, "Constant", [], [ir.AttrTensor("value", ir.tensor(array))])


@_adapter("Resize")
def _resize(node, target, older):
    """Opset 13 made roi and scales optional; before, empty tensors stand
    for them.  18 and 19's new attributes pass at their defaults."""
    mode = node.attributes.get("coordinate_transformation_mode")
    if mode is not None and mode.value == "half_pixel_symmetric":
        raise Refused(f"{_where(node)}: coordinate_transformation_mode half_pixel_symmetric")
    inputs = list(node.inputs) + [None] * (4 - len(node.inputs))
    extra = []
    for i in (1, 2):  # roi, scales
        if inputs[i] is None and \
                older.inputs[i].option != onnx.defs.OpSchema.FormalParameterOption.Optional:
            c = _constant_node(np.zeros((0,), dtype=np.float32))
            extra.append(c)
            inputs[i] = c.outputs[0]
    while inputs and inputs[-1] is None:
        inputs.pop()
    if not extra:
        return None
    return _like(node, "Resize", inputs, _attrs(node), extra=extra)


@_adapter("Softmax", "LogSoftmax", "Hardmax")
def _softmax(node, target, older):
    """Before opset 13 these flatten the input to 2-D at axis: the same only
    over the last axis, which a transpose makes of any other."""
    axis = node.attributes["axis"].value if "axis" in node.attributes else -1
    rank = _rank(node.inputs[0])
    last = [ir.AttrInt64("axis", -1)]
    if axis == -1:
        return None
    if rank is not None and axis == rank - 1:
        return _like(node, node.op_type, [node.inputs[0]], last)
    if rank is None:
        raise Refused(f"{_where(node)}: axis {axis} of an input of unknown rank")
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    there = _node("Transpose", [node.inputs[0]], [ir.AttrInt64s("perm", perm)])
    inner = _node(node.op_type, [there.outputs[0]], last)
    return _like(node, "Transpose", [inner.outputs[0]], [ir.AttrInt64s("perm", perm)],
                 extra=[there, inner])


@_adapter("Pad")
def _pad(node, target, older):
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        raise Refused(f"{_where(node)}: pads over chosen axes (opset 18)")
    mode = node.attributes.get("mode")
    if mode is not None and mode.value == "wrap":
        raise Refused(f"{_where(node)}: mode wrap (opset 19)")
    return None


@_adapter("Reshape")
def _reshape(node, target, older):
    """Opset 14's allowzero=1 (torch's view and reshape) makes a 0 in the
    shape mean size 0, where before it means "the input's size".  A
    constant shape without a 0 means the same either way; a computed one
    holds the sizes of tensors and has a 0 only for an empty tensor, which
    torch's own TorchScript exporter reshapes the same way at these opsets."""
    allowzero = node.attributes.get("allowzero")
    if allowzero is None or not allowzero.value:
        return None
    shape = _const(node.inputs[1])
    if shape is not None and 0 in shape.reshape(-1).tolist():
        raise Refused(f"{_where(node)}: a 0 in its shape means size 0 (allowzero=1)")
    return _like(node, "Reshape", list(node.inputs), _attrs(node, drop=("allowzero",)))


# --------------------------------------------------------------------------
# The schema check every kept or adapted node passes.

def _type_str(dtype):
    return f"tensor({onnx.helper.tensor_dtype_to_string(int(dtype))[len('TensorProto.'):].lower()})"


def _allowed(schema, formal):
    for c in schema.type_constraints:
        if c.type_param_str == formal.type_str:
            return set(c.allowed_type_strs)
    return {formal.type_str}


def _default(schema, name):
    proto = schema.attributes[name].default_value
    if proto is None or not proto.name:
        return None
    return onnx.helper.get_attribute_value(proto)


def _same_value(a, b):
    if isinstance(a, bytes):
        a = a.decode()
    if isinstance(b, bytes):
        b = b.decode()
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def _check(node, target, newer, older):
    if older is None:
        raise Refused(f"{_where(node)}: no {node.op_type} before opset {newer.since_version}")
    for name, attr in node.attributes.items():
        if name in older.attributes:
            continue
        if name in newer.attributes and _same_value(attr.value, _default(newer, name)):
            continue
        raise Refused(f"{_where(node)}: attribute {name} has no equivalent at opset {target}")
    inputs = list(node.inputs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    formals = older.inputs
    variadic = formals and formals[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
    if len(inputs) > len(formals) and not variadic:
        raise Refused(f"{_where(node)}: {len(inputs)} inputs, opset {target} takes "
                      f"{len(formals)}")
    for io, formals_of in ((inputs, older.inputs), (node.outputs, older.outputs)):
        for i, v in enumerate(io):
            if v is None or v.dtype is None or not formals_of:
                continue
            formal = formals_of[min(i, len(formals_of) - 1)]
            if _type_str(v.dtype) not in _allowed(older, formal):
                raise Refused(f"{_where(node)}: {v.dtype.name} is not a type it takes at "
                              f"opset {target}")


def _drop_defaults(node, older):
    """Attributes the node has that the older schema lacks (checked to be at
    their default)."""
    for name in [n for n in node.attributes if n not in older.attributes]:
        node.attributes.pop(name)


# --------------------------------------------------------------------------

def _graphs(graph):
    yield graph
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                yield attr.value
            elif attr.type == ir.AttributeType.GRAPHS:
                yield from attr.value


def _expand(node, schema):
    """The nodes of the operator's ONNX function (Mish, HardSwish, ...), made
    for node: (new_nodes, new_outputs), at the function's own opset."""
    body = schema.function_body
    version = next((o.version for o in body.opset_import if o.domain in ("", "ai.onnx")),
                   schema.since_version)
    env = dict(zip(body.input, node.inputs))
    nodes = []
    for proto in body.node:
        if proto.domain not in ("", "ai.onnx"):
            raise Refused(f"{_where(node)}: its ONNX function uses {proto.domain}")
        attrs = []
        for a in proto.attribute:
            if a.ref_attr_name:
                given = node.attributes.get(a.ref_attr_name)
                default = schema.attributes[a.ref_attr_name].default_value \
                    if a.ref_attr_name in schema.attributes else None
                if given is not None:
                    attrs.append(ir.Attr(a.name, given.type, given.value))
                elif default is not None and default.name:
                    default_attr = onnx.AttributeProto()
                    default_attr.CopyFrom(default)
                    default_attr.name = a.name
                    attrs.append(ir.serde.deserialize_attribute(default_attr))
            else:
                attrs.append(ir.serde.deserialize_attribute(a))
        new = _node(proto.op_type, [env[i] if i else None for i in proto.input], attrs,
                    num_outputs=len(proto.output), version=version)
        env.update(zip(proto.output, new.outputs))
        nodes.append(new)
    return nodes, [env[o] for o in body.output]


def _lower(node, version, target):
    """Node (at opset `version`) written at `target`: None when the node
    itself is valid there once the attributes the older schema lacks, at
    their defaults, are dropped (_drop_defaults); else (new_nodes,
    new_outputs), every new node valid at target.  Raises Refused."""
    newer = _schema(node.op_type, version)
    older = _schema(node.op_type, target)
    if newer is None:
        raise Refused(f"{_where(node)}: not an operator of opset {version}")
    if older is not None and older.since_version == newer.since_version:
        return None
    adapter = _ADAPTERS.get(node.op_type)
    replaced = adapter(node, target, older) if adapter else None
    if replaced is None and older is None and newer.has_function:
        replaced = _expand(node, newer)
    if replaced is None:
        _check(node, target, newer, older)
        return None
    new_nodes, new_outputs = replaced
    done = []
    for new in new_nodes:
        lowered = _lower(new, new.version or version, target)
        if lowered is None:
            _drop_defaults(new, _schema(new.op_type, target))
            done.append(new)
            continue
        sub_nodes, sub_outputs = lowered
        ir.convenience.replace_all_uses_with(list(new.outputs), sub_outputs)
        new_outputs = [sub_outputs[list(new.outputs).index(v)] if v in new.outputs else v
                       for v in new_outputs]
        done.extend(sub_nodes)
    for new in done:
        new.version = None
    return done, new_outputs


def _plan_graph(plan, graph, source, target):
    for node in list(graph):
        if node.domain not in ("", "ai.onnx"):
            continue
        lowered = _lower(node, node.version or source, target)
        if lowered is None:
            older = _schema(node.op_type, target)
            plan.edit(lambda n=node, o=older: _drop_defaults(n, o))
        else:
            plan.replace(graph, node, *lowered)


def _let_go():
    for node in _made:
        for i in range(len(node.inputs)):
            node.replace_input_with(i, None)
    _made.clear()


def convert(model, target, optimize=True):
    """Converts model (an onnx_ir Model) to ai.onnx opset `target` in place.
    Returns None; "" when it is not a conversion down (onnxscript's own
    converter does the rest); or why it cannot (the model is then as it
    was, apart from inlined functions and folded constants, or optimized).

    With optimize (the export's own optimize=, which comes after the
    conversion), the graph is optimized first, at the opset onnxscript's
    rules are written for: run after the conversion, some make nodes of
    later opsets (a Reshape with allowzero, _materialize_reshape_shape.py),
    and on a graph they have already run on they find nothing to do."""
    if not isinstance(model, ir.Model):
        return f"not an onnx_ir model: {type(model).__name__}"
    source = model.opset_imports.get("", None)
    if source is None or target >= source:
        return ""  # not a conversion down: onnxscript's own
    if target < 11:
        return f"torchrw converts down to opset 11 at the lowest, not {target}"
    import onnxscript.optimizer
    if optimize:
        onnxscript.optimizer.optimize_ir(model)
    else:
        onnxscript.optimizer.inline(model)
        onnxscript.optimizer.fold_constants(model)
    onnxscript.optimizer.remove_unused_functions(model)
    for attempt in ("as recorded", "with types inferred"):
        plan = _Plan()
        try:
            for graph in list(_graphs(model.graph)):
                _plan_graph(plan, graph, source, target)
            break
        except _Untyped as e:
            _let_go()
            if attempt != "as recorded":
                return str(e)
            # The exporter's translations leave some values untyped (a
            # symbolic rewriter's nodes, among them): ONNX's inference.
            ir.passes.common.ShapeInferencePass()(model)
        except Refused as e:
            _let_go()
            return str(e)
    _made.clear()
    plan.apply()
    model.opset_imports[""] = target
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.domain in ("", "ai.onnx"):
            node.version = None
    return None
