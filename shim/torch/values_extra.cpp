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

}  // namespace

extern "C" int trw_trace_set_input(trw_ctx* ctx, trw_value* output,
                                   size_t index, trw_value* value) {
  if (!trw::frame_of(ctx) || !output || !value)
    return trw_error(ctx, TRW_EINVAL, "trw_trace_set_input needs a context, "
                                      "an output and a value");
  trw::frame_of(ctx)->calls++;  // a graph edit: the rewriter fired
  if (!torch::jit::tracer::isTracing()) return 0;
  try {
    int err = 0;
    torch::jit::Node* node = recorded_node(ctx, output, index, &err);
    if (!node) return err;
    torch::jit::Graph* graph = node->owningGraph();
    torch::jit::WithInsertPoint guard(node);
    torch::jit::Value* replacement = nullptr;
    if (value->iv.isTensor()) {
      torch::jit::Value* t = torch::jit::tracer::getValueTrace(value->iv);
      auto kind = node->input(index)->type()->kind();
      // As torch's own ArgumentStash does for traced Python ints.
      if (kind == c10::TypeKind::IntType)
        t = graph->insert(c10::aten::Int, {t});
      else if (kind == c10::TypeKind::FloatType)
        t = graph->insert(c10::aten::Float, {t});
      else if (kind == c10::TypeKind::NumberType)
        t = graph->insert(c10::aten::ScalarImplicit, {t});
      replacement = t;
    } else if (constant_kind(value->iv)) {
      replacement = graph->insertConstant(value->iv);
    } else {
      return trw_error(ctx, TRW_ETYPE, "a %s cannot be a graph input here",
                       value->iv.tagKind().c_str());
    }
    node->replaceInput(index, replacement);
    return 0;
  } catch (const c10::Error& e) {
    return trw_error(ctx, TRW_EOP, "trw_trace_set_input: %s",
                     e.what_without_backtrace());
  } catch (const std::exception& e) {
    return trw_error(ctx, TRW_EOP, "trw_trace_set_input: %s", e.what());
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
