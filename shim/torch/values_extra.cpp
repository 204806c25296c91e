// values_extra.cpp - additions to the C API for the built-in rewriters
// (torchrw.h, "Added for built-in rewriters").

#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/ir.h>

#include <exception>

#include "frame.hpp"

namespace {

// The first tensor of a tensor or tuple value; nullptr if none.
const at::Tensor* first_tensor(const c10::IValue& iv) {
  if (iv.isTensor()) return &iv.toTensor();
  if (iv.isTuple()) {
    for (const auto& e : iv.toTupleRef().elements())
      if (e.isTensor()) return &e.toTensor();
    return nullptr;
  }
  return nullptr;
}

// Whether the value can be inserted into a graph as a constant.
bool constant_kind(const c10::IValue& iv) {
  return iv.isNone() || iv.isInt() || iv.isDouble() || iv.isBool() ||
         iv.isIntList() || iv.isDoubleList();
}

// The node the tracer recorded for the call whose result is output, or
// nullptr after trw_error() has said why; *err receives the code.
torch::jit::Node* recorded_node(trw_ctx* ctx, trw_value* output, size_t index,
                                int* err) {
  torch::jit::Value* out_v = nullptr;
  if (output->iv.isTensorList()) {
    auto tensors = output->iv.toTensorVector();
    if (!tensors.empty())
      out_v = torch::jit::tracer::getValueTrace(tensors.front());
  } else if (const at::Tensor* t = first_tensor(output->iv)) {
    out_v = torch::jit::tracer::getValueTrace(*t);
  }
  if (!out_v) {
    *err = trw_error(ctx, TRW_EINVAL, "the output holds no tensor");
    return nullptr;
  }
  torch::jit::Node* node = out_v->node();
  // A list output is a prim::ListUnpack of the operator's node.
  if (node->kind() == c10::prim::ListUnpack && node->inputs().size() == 1)
    node = node->input(0)->node();
  if (node->kind() == c10::prim::Param || node->kind() == c10::prim::Constant) {
    *err = trw_error(ctx, TRW_ENOTFOUND,
                     "the output was not produced by a recorded operator");
    return nullptr;
  }
  if (index >= node->inputs().size()) {
    *err = trw_error(ctx, TRW_ERANGE, "%s has %zu inputs, not %zu",
                     node->kind().toQualString(), node->inputs().size(),
                     index + 1);
    return nullptr;
  }
  return node;
}

// The graph value for a traced 0-dim tensor where a node takes a value of
// kind: converted as torch's own ArgumentStash does for traced Python
// numbers (aten::Int, aten::Float, aten::ScalarImplicit).
torch::jit::Value* traced_scalar(torch::jit::Graph* graph, const at::Tensor& t,
                                 c10::TypeKind kind) {
  torch::jit::Value* v = torch::jit::tracer::getValueTrace(t);
  if (kind == c10::TypeKind::IntType) return graph->insert(c10::aten::Int, {v});
  if (kind == c10::TypeKind::FloatType) return graph->insert(c10::aten::Float, {v});
  if (kind == c10::TypeKind::NumberType) return graph->insert(c10::aten::ScalarImplicit, {v});
  return v;
}

template <typename Edit>
int edit_input(trw_ctx* ctx, const char* what, trw_value* output, size_t index,
               Edit edit) {
  trw::frame_of(ctx)->calls++;  // a graph edit: the rewriter fired
  if (!torch::jit::tracer::isTracing()) return 0;
  try {
    int err = 0;
    torch::jit::Node* node = recorded_node(ctx, output, index, &err);
    if (!node) return err;
    torch::jit::WithInsertPoint guard(node);
    node->replaceInput(index, edit(node->owningGraph(), node->input(index)));
    return 0;
  } catch (const c10::Error& e) {
    return trw_error(ctx, TRW_EOP, "%s: %s", what, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return trw_error(ctx, TRW_EOP, "%s: %s", what, e.what());
  }
}

}  // namespace

extern "C" int trw_trace_set_input(trw_ctx* ctx, trw_value* output,
                                   size_t index, trw_value* value) {
  if (!trw::frame_of(ctx) || !output || !value)
    return trw_error(ctx, TRW_EINVAL, "trw_trace_set_input needs a context, "
                                      "an output and a value");
  if (!value->iv.isTensor() && !constant_kind(value->iv))
    return trw_error(ctx, TRW_ETYPE, "trw_trace_set_input: a %s cannot be a graph input here",
                     value->iv.tagKind().c_str());
  return edit_input(ctx, "trw_trace_set_input", output, index,
                    [&](torch::jit::Graph* graph, torch::jit::Value* old) {
                      if (value->iv.isTensor())
                        return traced_scalar(graph, value->iv.toTensor(), old->type()->kind());
                      return graph->insertConstant(value->iv);
                    });
}

extern "C" int trw_trace_set_input_ints(trw_ctx* ctx, trw_value* output, size_t index,
                                        trw_value* const elems[], size_t n) {
  if (!trw::frame_of(ctx) || !output || (n && !elems))
    return trw_error(ctx, TRW_EINVAL, "trw_trace_set_input_ints needs a context, "
                                      "an output and the elements");
  for (size_t i = 0; i < n; i++) {
    const c10::IValue* iv = elems[i] ? &elems[i]->iv : nullptr;
    bool scalar_tensor = iv && iv->isTensor() && iv->toTensor().dim() == 0 &&
                         c10::isIntegralType(iv->toTensor().scalar_type(), false);
    if (!iv || !(iv->isInt() || scalar_tensor))
      return trw_error(ctx, TRW_ETYPE, "trw_trace_set_input_ints: element %zu is %s, "
                       "not an int or a 0-dim integer tensor", i,
                       iv ? iv->tagKind().c_str() : "NULL");
  }
  return edit_input(ctx, "trw_trace_set_input_ints", output, index,
                    [&](torch::jit::Graph* graph, torch::jit::Value*) {
                      std::vector<torch::jit::Value*> values;
                      for (size_t i = 0; i < n; i++) {
                        const c10::IValue& iv = elems[i]->iv;
                        if (iv.isInt()) {
                          values.push_back(graph->insertConstant(iv));
                          continue;
                        }
                        const at::Tensor& t = iv.toTensor();
                        if (torch::jit::tracer::getValueTrace(t)->node()->kind() ==
                            c10::prim::Constant)  // not computed in the trace
                          values.push_back(graph->insertConstant(t.item<int64_t>()));
                        else
                          values.push_back(traced_scalar(graph, t, c10::TypeKind::IntType));
                      }
                      return graph->insertNode(graph->createList(c10::IntType::get(), values))
                          ->output();
                    });
}

extern "C" trw_value* trw_trace_arg_element(trw_ctx* ctx, size_t index, size_t elem) {
  const c10::IValue* argp = nullptr;
  if (trw::call_arg(ctx, index, "trw_trace_arg_element", &argp) != 0) return nullptr;
  const c10::IValue& arg = *argp;
  int64_t example;
  if (arg.isInt()) {
    example = arg.toInt();
  } else if (arg.isIntList() && elem < arg.toIntList().size()) {
    example = arg.toIntList().get(elem);
  } else {
    trw_error(ctx, arg.isIntList() ? TRW_ERANGE : TRW_ETYPE,
              "argument %zu of %s is %s, which has no int element %zu", index,
              trw_ctx_op(ctx), arg.tagKind().c_str(), elem);
    return nullptr;
  }
  torch::jit::Value* trace =
      torch::jit::tracer::isTracing() ? trw::traced_element(*trw::frame_of(ctx), index, elem)
                                      : nullptr;
  if (!trace) return trw::make_value(ctx, example);
  try {
    return trw::make_value(ctx, trw::traced_int(example, trace));
  } catch (const std::exception& e) {
    trw_error(ctx, TRW_EOP, "trw_trace_arg_element: %s", e.what());
    return nullptr;
  }
}

extern "C" int trw_trace_input_is_constant(trw_ctx* ctx, trw_value* output,
                                           size_t index) {
  if (!trw::frame_of(ctx) || !output)
    return trw_error(ctx, TRW_EINVAL,
                     "trw_trace_input_is_constant needs a context and an output");
  if (!torch::jit::tracer::isTracing()) return 1;
  try {
    int err = 0;
    torch::jit::Node* node = recorded_node(ctx, output, index, &err);
    if (!node) return err;
    return node->input(index)->node()->kind() == c10::prim::Constant ? 1 : 0;
  } catch (const c10::Error& e) {
    return trw_error(ctx, TRW_EOP, "trw_trace_input_is_constant: %s",
                     e.what_without_backtrace());
  } catch (const std::exception& e) {
    return trw_error(ctx, TRW_EOP, "trw_trace_input_is_constant: %s", e.what());
  }
}
