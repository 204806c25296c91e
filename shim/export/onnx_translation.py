"""torchrw's symbolic rewriters as translations of torch.onnx's exporter on
torch.export (torch.onnx.export's default from torch 2.9).

That exporter translates each ATen operator of the exported program with
an onnxscript function, looked up in a registry that its
``custom_translation_table`` argument extends.  A symbolic rewriter is
written for the TorchScript exporter, as ``symbolic(g, *inputs)`` calling
``g.op("Squeeze", x, axes_i=[0])``.  This module makes such a function
the translation of its operator, unchanged: ``Graph`` plays ``g`` (nodes
go into the exporter's current recording), ``Value`` plays a
``torch._C.Value`` over an ONNX IR value (type, sizes, rank, dtype, what
torch.onnx.symbolic_helper reads), and ``origin`` is the exporter's own
translation, called with the same ``(g, *inputs)``.

Part of the torch adapter: it relies on torch.onnx's private exporter
(torch/onnx/_internal/exporter) and on onnx_ir, as torch 2.9 to 2.14 have
them.  The runtime compiles it in and runs it as torchrw._onnx_translation.
"""
import inspect
import re

import numpy as np
import onnx
import onnx_ir as ir
import torch
from torch.onnx._internal.exporter import _core, _registration, _tensors

# TorchScript's attribute suffixes (torch/onnx/_internal/.../jit_utils.py).
_SUFFIX = re.compile(r"^(.+)_(i|f|s|t|g|z|ty)$")

# ONNX dtypes as torch's scalarType() names them.
_SCALAR_TYPES = {
    ir.DataType.FLOAT: "Float", ir.DataType.DOUBLE: "Double", ir.DataType.FLOAT16: "Half",
    ir.DataType.BFLOAT16: "BFloat16", ir.DataType.INT64: "Long", ir.DataType.INT32: "Int",
    ir.DataType.INT16: "Short", ir.DataType.INT8: "Char", ir.DataType.UINT8: "Byte",
    ir.DataType.BOOL: "Bool",
}


class _Type:
    """What a symbolic reads of ``value.type()``."""

    def __init__(self, value):
        self._value = value

    def _dims(self):
        shape = self._value.shape
        if shape is None:
            return None
        return [d if isinstance(d, int) else None for d in shape]

    def sizes(self):
        dims = self._dims()
        return None if dims is None or None in dims else dims

    def varyingSizes(self):  # noqa: N802 (torch._C's name)
        return self._dims()

    def dim(self):
        dims = self._dims()
        return None if dims is None else len(dims)

    def scalarType(self):  # noqa: N802
        return _SCALAR_TYPES.get(self._value.dtype)

    def isSubtypeOf(self, other):  # noqa: N802
        return True  # every value here is a tensor

    def kind(self):
        return "TensorType"

    def __repr__(self):
        return f"Tensor({self.scalarType()}, {self._dims()})"


class _Node:
    """What a symbolic reads of ``value.node()``."""

    def __init__(self, value):
        self._value = value

    def kind(self):
        if self._value is None:
            return "prim::Constant"
        producer = self._value.producer()
        if producer is None:
            return "prim::Param"
        domain = producer.domain or "onnx"
        return f"{domain}::{producer.op_type}"

    def mustBeNone(self):  # noqa: N802
        return self._value is None

    def output(self):
        return Value(self._value)


class Value:
    """A ``torch._C.Value`` look-alike around an ONNX IR value (None for an
    omitted optional input)."""

    def __init__(self, value):
        self.ir_value = value

    def type(self):
        return _Type(self.ir_value)

    def node(self):
        return _Node(self.ir_value)

    def debugName(self):  # noqa: N802
        return self.ir_value.name if self.ir_value is not None else "none"

    def setType(self, t):  # noqa: N802
        return self

    def __repr__(self):
        return f"Value({self.ir_value!r})"


def _wrap(v):
    if isinstance(v, ir.Value):
        return Value(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_wrap(x) for x in v)
    return v


def _unwrap(v):
    if isinstance(v, Value):
        return v.ir_value
    if isinstance(v, (list, tuple)):
        return type(v)(_unwrap(x) for x in v)
    return v


def _ir_tensor(value):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        return ir.tensor(value.numpy())
    return ir.tensor(np.asarray(value))


def _attribute(key, value):
    m = _SUFFIX.match(key)
    name, kind = (m.group(1), m.group(2)) if m else (key, "z")
    many = isinstance(value, (list, tuple))
    if kind == "i":
        return ir.AttrInt64s(name, [int(v) for v in value]) if many else ir.AttrInt64(name, int(value))
    if kind == "f":
        return (ir.AttrFloat32s(name, [float(v) for v in value]) if many
                else ir.AttrFloat32(name, float(value)))
    if kind == "s":
        return ir.AttrStrings(name, [str(v) for v in value]) if many else ir.AttrString(name, str(value))
    if kind == "t":
        return (ir.AttrTensors(name, [_ir_tensor(v) for v in value]) if many
                else ir.AttrTensor(name, _ir_tensor(value)))
    if kind == "z" and isinstance(value, torch.Tensor):
        return ir.AttrTensor(name, _ir_tensor(value))
    if kind == "z":
        return ir.convenience.convert_attribute(name, value)
    raise ValueError(f"torchrw: attribute {key!r}: kind '{kind}' is not supported on torch.export")


def _type_proto(value):
    dims = None
    if value.shape is not None:
        dims = [d if isinstance(d, int) else None for d in value.shape]
    return onnx.helper.make_tensor_type_proto(value.dtype.value, dims)


def _infer(node, opset):
    """Types and shapes of node's outputs by ONNX's own inference for its
    schema, as the exporter's values carry them: the exporter's
    translations read them (len(x.shape)), and so does value.type()."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return
    named = {}
    for i, v in enumerate(list(node.inputs) + list(node.outputs)):
        if v is not None and not v.name:
            v.name = f"torchrw_{id(node):x}_{i}"
    for v in node.inputs:
        if v is not None and v.dtype is not None:
            named[v.name] = _type_proto(v)
    try:
        inferred = onnx.shape_inference.infer_node_outputs(
            schema, ir.serde.serialize_node(node), named)
    except Exception:  # noqa: BLE001 (inference is a help, not a check)
        return
    for out in node.outputs:
        t = inferred.get(out.name)
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.elem_type:
            continue
        out.dtype = ir.DataType(t.tensor_type.elem_type)
        if t.tensor_type.HasField("shape"):
            out.shape = ir.Shape([d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                  for d in t.tensor_type.shape.dim])


class Graph:
    """``g`` of a TorchScript symbolic: nodes go into the exporter's current
    recording (the onnxscript evaluator it translates an operator under)."""

    def __init__(self, opset):
        self.opset = opset
        self._tracer = _core.current_tracer

    def op(self, opname, *args, outputs=1, **kwargs):
        if opname == "prim::Constant" and not args and not kwargs:
            return Value(None)  # torch's placeholder for an omitted optional input
        domain, _, op_type = opname.rpartition("::")
        if domain == "onnx":
            domain = ""
        inputs = []
        for a in args:
            if a is None or isinstance(a, Value):
                inputs.append(_unwrap(a))
            else:  # a Python number or tensor, as torch's g.op makes it a Constant
                inputs.append(self.op("Constant", value_t=torch.tensor(a)).ir_value)
        if domain == "":
            self._promote(op_type, inputs, kwargs)
        while inputs and inputs[-1] is None:
            inputs.pop()
        attributes = [_attribute(k, v) for k, v in kwargs.items() if v is not None]
        node = ir.Node(domain, op_type, inputs=inputs, attributes=attributes,
                       outputs=[_tensors.SymbolicTensor(self._tracer.opset)
                                for _ in range(outputs)],
                       version=self.opset if domain == "" else 1)
        self._tracer.nodes.append(node)
        if domain == "":
            _infer(node, self.opset)
        results = tuple(Value(o) for o in node.outputs)
        return results[0] if outputs == 1 else results

    def _promote(self, op_type, inputs, kwargs):
        """A symbolic written for an older opset passes as attributes what
        the graph's opset takes as inputs (Squeeze's and ReduceMean's axes
        from 13 and 18, Split's split, Clip's min and max): those become
        constant inputs in the schema's place, as the ONNX version converter
        would rewrite them."""
        try:
            schema = onnx.defs.get_schema(op_type, self.opset, "")
        except onnx.defs.SchemaError:
            return
        names = [p.name for p in schema.inputs]
        for key in list(kwargs):
            m = _SUFFIX.match(key)
            name, kind = (m.group(1), m.group(2)) if m else (key, "z")
            if name in schema.attributes or name not in names or kwargs[key] is None:
                continue
            dtype = torch.int64 if kind == "i" else torch.float32 if kind == "f" else None
            value = torch.tensor(kwargs.pop(key), dtype=dtype)
            index = names.index(name)
            inputs.extend([None] * (index + 1 - len(inputs)))
            inputs[index] = self.op("Constant", value_t=value).ir_value

    def at(self, operator, *args, **kwargs):
        raise NotImplementedError("torchrw: g.at() has no equivalent on torch.export")


def _owned(g, result):
    """result with every output this translation did not make (an input
    handed back, as by a symbolic that finds the call to be the identity)
    passed through an Identity.  The exporter names a translation's outputs
    after the FX node and renames their producers, which for a graph input
    or an initializer would rename the model's own value (onnx_ir refuses
    an initializer's: "Key 'p_w' does not match the name of the value");
    the exporter's translations of aliases write an Identity too."""
    made = {id(o) for n in g._tracer.nodes for o in n.outputs}

    def own(v):
        if isinstance(v, ir.Value) and id(v) not in made:
            return g.op("Identity", Value(v)).ir_value
        return v

    if isinstance(result, (list, tuple)):
        return type(result)(own(v) for v in result)
    return own(result)


_registries = {}


def origin(overload, opset):
    """The exporter's own translation of overload, as ``origin(g, *inputs)``;
    None when it has none."""
    if opset not in _registries:
        _registries[opset] = _registration.ONNXRegistry.from_torchlib(opset_version=opset)
    decomps = [d for d in _registries[opset].get_decomps(overload) if not d.is_custom]
    if not decomps:
        return None
    function = decomps[0].onnx_function

    def translate(g, *args, **kwargs):
        return _wrap(function(*_unwrap(args), **_unwrap(kwargs)))

    translate.__name__ = f"torch.onnx translation of {overload.name()}"
    return translate


def translator(overload, symbolic, opset):
    """The translation of overload that runs symbolic(g, *arguments), with the
    operator's arguments in its schema's order (as TorchScript passes them)."""
    params = []
    for arg in overload._schema.arguments:
        kind = (inspect.Parameter.KEYWORD_ONLY if arg.kwarg_only
                else inspect.Parameter.POSITIONAL_OR_KEYWORD)
        default = arg.default_value if arg.has_default_value() else inspect.Parameter.empty
        if default is inspect.Parameter.empty and arg.type.kind() == "OptionalType":
            default = None
        params.append(inspect.Parameter(arg.name, kind, default=default))
    signature = inspect.Signature(params)

    def translate(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        g = Graph(opset)
        result = symbolic(g, *_wrap(list(bound.arguments.values())))
        return _owned(g, _unwrap(result))

    translate.__signature__ = signature
    translate.__name__ = f"torchrw_{overload.name().replace('::', '_').replace('.', '_')}"
    return translate


def overloads(qualified_name):
    """The OpOverloads of "aten::squeeze" (all) or "aten::squeeze.dim" (one)."""
    namespace, _, rest = qualified_name.partition("::")
    name, _, overload = rest.partition(".")
    packet = getattr(getattr(torch.ops, namespace), name, None)
    if packet is None:
        return []
    names = [overload] if overload else packet.overloads()
    return [getattr(packet, n) for n in names if hasattr(packet, n)]


# --- Symbolics of torch.autograd.Function classes ---------------------------
#
# torch.export runs a Function's forward, so nothing of the Function is left
# in the program for a translation to replace.  While torch.onnx.export
# captures the model, the Function's apply is routed through an operator of
# torchrw's own, torchrw::fn<N>(Tensor[] inputs, str call) -> Tensor[]: it
# runs the original apply (also on fake tensors, for the capture), and in
# the program it is one node, which the Function's symbolic translates.
# `call` names the call's non-tensor arguments, kept here.

_library = None
_function_ops = {}   # the Function's dotted path -> OpOverload
_calls = {}          # call key -> (apply, template)


def _template(args):
    tensors, template = [], []
    for a in args:
        if isinstance(a, torch.Tensor):
            template.append(("tensor", len(tensors)))
            tensors.append(a)
        else:
            template.append(("value", a))
    return tensors, template


def _fill(template, tensors):
    return [tensors[v] if kind == "tensor" else v for kind, v in template]


def _run(inputs, call):
    apply, template = _calls[call]
    out = apply(*_fill(template, list(inputs)))
    return list(out) if isinstance(out, (tuple, list)) else [out]


def function_op(path):
    """torchrw's operator standing for the apply of the Function class at
    path ("pkg.ops.MyClamp"); defined once per path, before the class need
    be imported (the exporter reads its translations before it captures)."""
    global _library
    if path in _function_ops:
        return _function_ops[path]
    if _library is None:
        _library = torch.library.Library("torchrw", "FRAGMENT")
    name = "fn%d_%s" % (len(_function_ops), re.sub(r"\W", "_", path.rpartition(".")[2]))
    _library.define(f"{name}(Tensor[] inputs, str call) -> Tensor[]")
    _library.impl(name, _run, "CompositeExplicitAutograd")
    torch.library.register_fake(f"torchrw::{name}", _run, lib=_library)
    _function_ops[path] = getattr(getattr(torch.ops.torchrw, name), "default")
    return _function_ops[path]


def routed_apply(cls, op):
    """What cls.apply is while torch.onnx.export captures: a call of op."""
    original = cls.apply

    def apply(*args):
        tensors, template = _template(args)
        key = "c%d" % len(_calls)
        _calls[key] = (original, template)
        out = op(tensors, key)
        return out[0] if len(out) == 1 else tuple(out)

    return staticmethod(apply)


def function_translator(op, symbolic, opset):
    """The translation of torchrw's operator for a Function: its symbolic,
    called as TorchScript calls it, symbolic(g, *apply's arguments)."""

    def translate(inputs, call):
        _, template = _calls[call]
        g = Graph(opset)
        result = symbolic(g, *_fill(template, [Value(v) for v in inputs]))
        result = _owned(g, _unwrap(result))
        return list(result) if isinstance(result, (tuple, list)) else [result]

    translate.__signature__ = inspect.Signature([
        inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("call", inspect.Parameter.POSITIONAL_OR_KEYWORD)])
    translate.__name__ = "torchrw_" + op.name().replace("::", "_").replace(".", "_")
    return translate


def forget_calls():
    _calls.clear()
