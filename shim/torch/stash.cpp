// stash.cpp - the tracer's argument stash around a rewriter call.
//
// When Python code passes a traced value where an operator takes an int,
// an int list or a float (`F.pad(x, (0, W % 7))`, where W came from
// x.shape while tracing), torch's argument parser does not give the
// operator the value alone: it leaves the traced value, by argument name,
// in a per-thread stash (torch::jit::tracer::ArgumentStash), and the
// tracer's kernel for that operator takes it from there when it records
// the node.  A rewriter that replaces the operator never reaches that
// kernel, so the entry would stay behind: the next call with an argument
// of that name would take it (a wrong graph), or stash the same element
// again, which fails torch's assert `list_trace[idx] == nullptr`.
//
// So the bridge takes the call's entries off the stash before the
// rewriter runs (the operators it calls see a clean stash), tells the
// rewriter which arguments were traced (trw_trace_arg_is_constant), and
// puts them back for the original when the rewriter hands it the very
// arguments it was given.  What the rewriter leaves unused is dropped.

#include <ATen/ATen.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/ir.h>

#include "frame.hpp"

namespace trw {

namespace {

using torch::jit::Value;
using torch::jit::tracer::ArgumentStash;

// A 0-dim int64 tensor the tracer does not know, holding value: to
// re-stash a traced value through torch's own (public) stash functions
// (they take a tensor and look its trace up), or to hand a rewriter a
// traced int.  Made with the tracer's key excluded, so no node records it.
at::Tensor carrier(int64_t value) {
  c10::impl::ExcludeDispatchKeyGuard no_trace(c10::DispatchKey::Tracer);
  return at::scalar_tensor(value, at::kLong);
}

// The traced tensor behind a stashed value, with the type the stash gave
// it (aten::Int of a 0-dim tensor, aten::Float, aten::ScalarImplicit), or
// the value itself with no type.
Value* source_of(Value* v, c10::TypePtr* type) {
  torch::jit::Node* n = v->node();
  *type = nullptr;
  if (n->inputs().size() == 1) {
    if (n->kind() == c10::aten::Int) *type = c10::IntType::get();
    else if (n->kind() == c10::aten::Float) *type = c10::FloatType::get();
    else if (n->kind() == c10::aten::ScalarImplicit) *type = c10::NumberType::get();
  }
  return *type ? n->input(0) : v;
}

// The stash's conversion node for v, which re-stashing replaced by one of
// its own, goes when nothing else uses it.
void drop_if_unused(Value* v, Value* source) {
  if (v != source && !v->hasUses()) v->node()->destroy();
}

// Whether an argument of type t can have stashed entries: an int (value
// stash) or an int list (list stash).
enum class Stashable { kNo, kInt, kInts };
Stashable stashable(const c10::TypePtr& type, const c10::IValue& v) {
  c10::TypePtr t = type;
  if (t->kind() == c10::TypeKind::OptionalType)
    t = t->castRaw<c10::OptionalType>()->getElementType();
  if ((t->kind() == c10::TypeKind::IntType || t->kind() == c10::TypeKind::SymIntType) &&
      v.isInt())
    return Stashable::kInt;
  if (t->kind() == c10::TypeKind::ListType && v.isIntList()) {
    auto e = t->castRaw<c10::ListType>()->getElementType()->kind();
    if (e == c10::TypeKind::IntType || e == c10::TypeKind::SymIntType) return Stashable::kInts;
  }
  return Stashable::kNo;
}

// Removes what a probe inserted: the node and, once unused, what it made
// to feed it (a list and its constants).
void drop_probe(torch::jit::Node* probe) {
  std::vector<torch::jit::Node*> fed;
  for (Value* in : probe->inputs()) fed.push_back(in->node());
  probe->destroy();
  for (torch::jit::Node* n : fed) {
    if (n->kind() == c10::prim::ListConstruct && !n->output()->hasUses()) {
      std::vector<torch::jit::Node*> consts;
      for (Value* e : n->inputs())
        if (e->node()->kind() == c10::prim::Constant) consts.push_back(e->node());
      n->destroy();
      for (torch::jit::Node* c : consts)
        if (!c->output()->hasUses()) c->destroy();
    } else if (n->kind() == c10::prim::Constant && !n->output()->hasUses()) {
      n->destroy();
    }
  }
}

}  // namespace

// The stash itself is private to libtorch (its inline accessors reach a
// thread-local that libtorch does not export), so the call's entries are
// taken off the way torch's own kernels take them: torch's exported
// tracer::addInputs for the argument's name and type, on a probe node that
// is never part of the graph, whose inputs then say which elements were
// traced.
void take_stash(Frame& frame) {
  if (!frame.op || !torch::jit::tracer::isTracing()) return;
  const auto& state = torch::jit::tracer::getTracingState();
  if (!state || !state->graph) return;
  torch::jit::Graph* g = state->graph.get();
  const auto& params = frame.op->schema().arguments();
  static const c10::Symbol probe_kind = c10::Symbol::fromQualString("trw::stash_probe");
  for (size_t i = 0; i < params.size() && i < frame.arena.size(); i++) {
    const c10::IValue& v = frame.arena[i].iv;
    Stashable kind = stashable(params[i].type(), v);
    if (kind == Stashable::kNo) continue;
    const std::string& name = params[i].name();
    torch::jit::Node* probe = g->create(probe_kind, 0);
    Stashed s;
    s.index = i;
    try {
      if (kind == Stashable::kInt) {
        torch::jit::tracer::addInputs(probe, name.c_str(), v.toInt());
        Value* in = probe->input(0);
        if (in->node()->kind() != c10::prim::Constant) {
          s.is_value = true;
          s.value = in;
          s.traced = true;
        }
      } else {
        std::vector<int64_t> ints = v.toIntVector();
        torch::jit::tracer::addInputs(probe, name.c_str(), at::IntArrayRef(ints));
        torch::jit::Node* list = probe->input(0)->node();
        for (Value* e : list->inputs()) {
          bool traced = e->node()->kind() != c10::prim::Constant;
          s.list.push_back(traced ? e : nullptr);
          s.traced = s.traced || traced;
        }
      }
    } catch (const std::exception& e) {
      // What torch's own kernel would have met too; the original reports it.
      trw__log(TRW__LOG_DEBUG, "the tracer's stash of %s: %s", name.c_str(), e.what());
    }
    drop_probe(probe);
    if (s.traced) frame.stashed.push_back(std::move(s));
  }
}

bool arg_traced(const Frame& frame, size_t index) {
  for (const auto& s : frame.stashed)
    if (s.index == index && s.traced) return true;
  return false;
}

torch::jit::Value* traced_element(const Frame& frame, size_t index, size_t elem) {
  for (const auto& s : frame.stashed) {
    if (s.index != index) continue;
    Value* v = s.is_value ? s.value : elem < s.list.size() ? s.list[elem] : nullptr;
    if (!v) return nullptr;
    c10::TypePtr type;
    return source_of(v, &type);
  }
  return nullptr;
}

at::Tensor traced_int(int64_t example, torch::jit::Value* trace) {
  at::Tensor t = carrier(example);
  torch::jit::tracer::setValueTrace(t, trace);
  return t;
}

void give_stash(Frame& frame, size_t nargs, trw_value* const args[]) {
  if (frame.stashed.empty() || !torch::jit::tracer::isTracing()) return;
  const auto& params = frame.op->schema().arguments();
  std::vector<Stashed> left;
  for (auto& s : frame.stashed) {
    // Only an argument handed over as it came: another value has other
    // elements than the traced ones.
    if (s.index >= nargs || args[s.index] != &frame.arena[s.index]) {
      left.push_back(std::move(s));
      continue;
    }
    const std::string& name = params[s.index].name();
    at::Tensor t = carrier(0);
    if (s.is_value) {
      c10::TypePtr type;
      Value* src = source_of(s.value, &type);
      torch::jit::tracer::setValueTrace(t, src);
      ArgumentStash::stashValue(name, s.index, t, type);
      drop_if_unused(s.value, src);
    } else {
      for (size_t i = 0; i < s.list.size(); i++) {
        Value* v = s.list[i];
        if (!v) continue;
        c10::TypePtr type;
        Value* src = source_of(v, &type);
        if (!type) continue;  // not an int the stash made: left constant
        torch::jit::tracer::setValueTrace(t, src);
        ArgumentStash::stashIntArrayRefElem(name, s.list.size(), i, t);
        drop_if_unused(v, src);
      }
    }
    torch::jit::tracer::delValueTrace(t);
  }
  frame.stashed = std::move(left);
}

void drop_stash(Frame& frame) {
  if (torch::jit::tracer::isTracing()) {
    for (auto& s : frame.stashed) {
      c10::TypePtr type;
      if (s.is_value && s.value) {
        drop_if_unused(s.value, source_of(s.value, &type));
      } else {
        for (Value* v : s.list)
          if (v) drop_if_unused(v, source_of(v, &type));
      }
    }
  }
  frame.stashed.clear();
}

}  // namespace trw
