// bridge.cpp - torchrw's kernels on the libtorch dispatcher.
//
// One boxed kernel per rewritten operator sits at kKey, above Tracer, and
// a fallthrough covers every other operator at that key.  The key is in the
// thread's included set only while a trace runs, so eager code never visits
// it.  The kernel runs the rewriter selected for the trace; the rewriter
// reaches the original by redispatching below kKey, where the tracer
// records it.

#include "bridge.h"

#include <ATen/ScalarOps.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/library.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "frame.hpp"

namespace trw {
namespace {

// What an installed kernel runs in the current trace.
struct Slot {
  std::string op;  // "aten::squeeze.dim"
  size_t index;    // in g_slots, and in the tracing thread's t_selected
};

// What this thread's trace runs: the rewriter chosen for each slot (by
// index; none past the end) and the environment.  Per thread, as the
// tracer's own state is: one thread choosing for its trace never changes
// the choice under another thread's trace.
thread_local std::vector<trw__rewriter*> t_selected;
thread_local const trw_env* t_env = nullptr;

trw__rewriter* selected(const Slot* slot) {
  return slot->index < t_selected.size() ? t_selected[slot->index] : nullptr;
}

// The registrations live until the process ends and are never destroyed
// then: deregistering rebuilds the dispatch table of every operator (the
// fallback touches all of them), which cost about 0.1 s at every exit.
// A reinstallation (the registry changed) replaces g_impl explicitly.
std::vector<Slot*>* g_slots = new std::vector<Slot*>();
torch::Library* g_impl = nullptr;
torch::Library* g_fallback = nullptr;
uint64_t g_generation = ~uint64_t{0};

void push_result(const c10::FunctionSchema& schema, trw_value* result,
                 torch::jit::Stack* stack) {
  size_t nret = schema.returns().size();
  if (nret == 1) {
    stack->push_back(result->iv);
  } else if (nret > 1) {
    auto elems = result->iv.toTupleRef().elements();
    for (auto& e : elems) stack->push_back(e);
  }
}

// Checks the rewriter's result against the schema's returns; "" when fine.
std::string result_problem(const c10::FunctionSchema& schema,
                           const trw_value* result) {
  size_t nret = schema.returns().size();
  if (nret == 0) return "";
  if (!result) return "it returned no result";
  if (nret == 1) {
    bool want_tensor =
        schema.returns()[0].type()->kind() == c10::TypeKind::TensorType;
    if (want_tensor && !result->iv.isTensor())
      return "it returned a " + result->iv.tagKind() + ", not a Tensor";
    return "";
  }
  if (!result->iv.isTuple() ||
      result->iv.toTupleRef().elements().size() != nret)
    return "it must return a tuple of " + std::to_string(nret) + " values";
  return "";
}

// ---- The operator trace (TORCHRW_TRACE) ----------------------------------

FILE* g_trace = nullptr;
int (*g_where)(char*, size_t) = nullptr;

// torch.export: lowering depth on this thread (trw__bridge_lower).
thread_local int t_lowering = 0;
thread_local int t_capturing = 0;

// Whether a call reaching a kernel is one the export records: a traced
// call (calls inside another operator's implementation are not, the
// tracer clears its state around them), or a call make_fx records while
// torch.export's program is lowered.
bool recording() {
  return torch::jit::tracer::isTracing() || (t_lowering > 0 && fx_recording());
}

// Lowering a torch.export program, not tracing for TorchScript.
bool lowering_only() { return t_lowering > 0 && !torch::jit::tracer::isTracing(); }

void describe(const c10::IValue& v, std::string& out) {
  if (v.isTensor()) {
    const auto& t = v.toTensor();
    if (!t.defined()) {
      out += "undefined";
      return;
    }
    out += c10::toString(t.scalar_type());
    out += "[";
    try {
      for (int64_t i = 0; i < t.dim(); i++) {
        if (i) out += ",";
        out += std::to_string(t.sizes()[i]);
      }
    } catch (const c10::Error&) {
      out += "symbolic";  // torch.export with dynamic shapes
    }
    out += "]";
  } else if (v.isInt()) {
    out += std::to_string(v.toInt());
  } else if (v.isDouble()) {
    out += std::to_string(v.toDouble());
  } else if (v.isBool()) {
    out += v.toBool() ? "True" : "False";
  } else if (v.isNone()) {
    out += "None";
  } else if (v.isIntList()) {
    out += "[";
    auto l = v.toIntList();
    for (size_t i = 0; i < l.size(); i++) out += (i ? "," : "") + std::to_string(l.get(i));
    out += "]";
  } else if (v.isTensorList()) {
    out += "[";
    auto l = v.toTensorList();
    for (size_t i = 0; i < l.size(); i++) {
      if (i) out += ", ";
      describe(c10::IValue(l.get(i)), out);
    }
    out += "]";
  } else if (v.isString()) {
    out += "'" + v.toStringRef() + "'";
  } else {
    out += v.tagKind();
  }
}

// One line per operator the traced code calls: inputs, caller, rewriter.
void trace_op(const c10::OperatorHandle& op, const torch::jit::Stack* stack,
              const trw__rewriter* rw) {
  const auto& schema = op.schema();
  size_t n = schema.arguments().size();
  std::string line = "torchrw trace: " + schema.name();
  if (!schema.overload_name().empty()) line += "." + schema.overload_name();
  line += "(";
  for (size_t i = 0; i < n && n <= stack->size(); i++) {
    if (i) line += ", ";
    describe((*stack)[stack->size() - n + i], line);
  }
  char where[1024] = "?";
  if (g_where) g_where(where, sizeof where);
  line += ") at ";
  line += where;
  if (rw) {
    line += " -> ";
    line += rw->stable;
    line += " (" + std::string(rw->file) + ":" + std::to_string(rw->line) + ")";
  }
  line += "\n";
  fwrite(line.data(), 1, line.size(), g_trace);
  fflush(g_trace);
}

// The fallback when the operator trace or the status line is on: every
// operator the export records is logged or counted.
void trace_fallback(const c10::OperatorHandle& op, c10::DispatchKeySet ks,
                    torch::jit::Stack* stack) {
  if (recording()) {
    trw__status_op();
    if (g_trace) trace_op(op, stack, nullptr);
  }
  op.redispatchBoxed(ks & c10::DispatchKeySet(c10::DispatchKeySet::FULL_AFTER, kKey), stack);
}

// A Python number where the schema declares a Tensor (torch.floor_divide(a,
// 3) as torch.export records it) reaches the rewriter as a plain 0-dim
// tensor, as under the TorchScript tracer: rewriters see the schema's types
// whichever exporter runs.  torch itself passes such a number as a "wrapped
// number" tensor, which torch.export's Python dispatch modes turn back into
// a number when the rewriter hands it to another operator: it is copied
// into a tensor without the mark.
c10::IValue as_declared(const c10::Argument& arg, c10::IValue v) {
  if (arg.type()->kind() != c10::TypeKind::TensorType) return v;
  if (v.isInt() || v.isDouble() || v.isBool())
    return c10::scalar_to_tensor(v.toScalar());
  if (!v.isTensor() || !v.toTensor().defined() ||
      !v.toTensor().unsafeGetTensorImpl()->is_wrapped_number())
    return v;
  const at::Tensor& t = v.toTensor();
  try {
    switch (t.scalar_type()) {
      case at::kLong: return c10::scalar_to_tensor(*static_cast<const int64_t*>(t.data_ptr()));
      case at::kDouble: return c10::scalar_to_tensor(*static_cast<const double*>(t.data_ptr()));
      case at::kBool: return c10::scalar_to_tensor(*static_cast<const bool*>(t.data_ptr()));
      default: return v;
    }
  } catch (const c10::Error&) {
    return v;  // no data to read (a fake tensor): left as torch passed it
  }
}

void run_rewriter(const c10::OperatorHandle& op, c10::DispatchKeySet below,
                  torch::jit::Stack* stack, Slot* slot, trw__rewriter* rw) {
  const auto& schema = op.schema();
  size_t nargs = schema.arguments().size();

  Frame frame{op, below, {}, nullptr, nullptr, 0, 0, {}};
  std::vector<trw_value*> args;
  args.reserve(nargs);
  for (size_t i = 0; i < nargs; i++) {
    frame.arena.push_back(trw_value{
        as_declared(schema.arguments()[i], std::move((*stack)[stack->size() - nargs + i]))});
    args.push_back(&frame.arena.back());
  }
  torch::jit::drop(*stack, nargs);
  // The tracer's stashed arguments of this call wait for the original (or
  // go), so that the operators the rewriter calls do not take them.
  take_stash(frame);

  trw_ctx ctx{};
  ctx.rw = rw;
  ctx.env = t_env;
  ctx.op = slot->op.c_str();
  ctx.frame = &frame;

  trw_value* result = nullptr;
  int rc;
  int unknown_before = unknowable();
  if (depth() >= kMaxDepth) {
    rc = trw_error(&ctx, TRW_ERECURSION,
                   "rewriters nested more than %d deep (does the rewriter "
                   "call its own operator instead of the original?)",
                   kMaxDepth);
  } else {
    depth()++;
    rc = reinterpret_cast<trw_function_fn>(rw->fn)(&ctx, nargs, args.data(),
                                                  &result);
    depth()--;
  }
  drop_stash(frame);
  if (rc == 0) {
    std::string problem = result_problem(schema, result);
    if (!problem.empty())
      rc = trw_error(&ctx, TRW_ETYPE, "%s", problem.c_str());
  }
  if (rc != 0 && lowering_only() && unknowable() > unknown_before) {
    // torch.export traces with fake tensors and symbolic sizes: a rewriter
    // that needs a value they do not have cannot apply to this call.  The
    // original runs instead (what it recorded before failing is dead code,
    // which the exporter drops).
    char msg[2048];
    trw__ctx_failure(&ctx, rc, msg, sizeof msg);
    trw__log(TRW__LOG_INFO, "%s cannot apply while torch.export traces, the original runs: %s",
             rw->stable, msg);
    for (size_t i = 0; i < nargs; i++) stack->push_back(std::move(frame.arena[i].iv));
    op.redispatchBoxed(below, stack);
    return;
  }
  if (rc != 0 || frame.calls > 0 || frame.originals != 1) {
    __atomic_add_fetch(&rw->hits, 1, __ATOMIC_RELAXED);
    trw__status_fired();
  }
  if (rc != 0) {
    char msg[2048];
    trw__ctx_failure(&ctx, rc, msg, sizeof msg);
    // Raised only after the C rewriter has returned: no C++ exception ever
    // crosses a plugin's frames.  pybind11 turns it into RuntimeError.
    throw std::runtime_error(msg);
  }
  push_result(schema, result, stack);
}

class Kernel final : public c10::OperatorKernel {
 public:
  explicit Kernel(Slot* slot) : slot_(slot) {}

  void operator()(const c10::OperatorHandle& op, c10::DispatchKeySet ks,
                  torch::jit::Stack* stack) {
    auto below = ks & c10::DispatchKeySet(c10::DispatchKeySet::FULL_AFTER, kKey);
    // Operators that run inside another operator's implementation are not
    // recorded by the tracer (it clears its state around the call): leave
    // them.
    if (recording()) {
      trw__status_op();
      trw__rewriter* rw = selected(slot_);
      if (g_trace) trace_op(op, stack, rw);
      if (rw) {
        run_rewriter(op, below, stack, slot_, rw);
        return;
      }
    }
    op.redispatchBoxed(below, stack);
  }

 private:
  Slot* slot_;
};

// The overloads of the operators C rewriters target, by name
// ("aten::squeeze" -> its overloads), read once per installation.  Only
// the targets are kept: indexing every operator torch has (thousands)
// took 2 to 7 ms of the first export on torch 2.14.
using OpIndex = std::unordered_map<std::string, std::vector<c10::OperatorName>>;

OpIndex index_ops() {
  OpIndex index;
  size_t n = trw__registry_count();
  for (size_t i = 0; i < n; i++) {
    trw__rewriter* r = trw__registry_at(i);
    if (!r || r->kind != TRW_KIND_FUNCTION || r->lang != TRW__LANG_C || !r->op) continue;
    std::string s(r->op);
    index[s.substr(0, s.find('.', s.find("::") + 2))];
  }
  for (auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
    auto it = index.find(name.name);
    if (it != index.end()) it->second.push_back(name);
  }
  return index;
}

// Every overload of "aten::name", or the one of "aten::name.overload".
// Out variants are left out unless named: their arguments differ.
std::vector<c10::OperatorName> resolve(const OpIndex& index, const char* target) {
  std::string s(target);
  auto dot = s.find('.', s.find("::") + 2);
  std::vector<c10::OperatorName> out;
  if (dot != std::string::npos) {
    c10::OperatorName name{s.substr(0, dot), s.substr(dot + 1)};
    if (c10::Dispatcher::singleton().findSchema(name)) out.push_back(name);
    return out;
  }
  auto it = index.find(s);
  if (it == index.end()) return out;
  for (auto& name : it->second) {
    const auto& ov = name.overload_name;
    if (ov == "out" || (ov.size() > 4 && ov.compare(ov.size() - 4, 4, "_out") == 0))
      continue;
    out.push_back(name);
  }
  return out;
}

std::string full_name(const c10::OperatorName& n) {
  return n.overload_name.empty() ? n.name : n.name + "." + n.overload_name;
}

// (Re)installs one kernel per operator that any C function rewriter
// targets.  Which rewriter runs is chosen per trace, in select_all.
void install() {
  delete g_impl;  // deregisters the previous kernels; their slots go after
  g_impl = nullptr;
  for (Slot* slot : *g_slots) delete slot;
  g_slots->clear();
  auto t0 = std::chrono::steady_clock::now();
  if (!g_fallback) {
    // Operators without a rewriter fall through torchrw's key at no cost,
    // unless the operator trace or the status line (which counts them) is on.
    g_fallback = new torch::Library(
        torch::Library::IMPL, "_", kKey, __FILE__, __LINE__);
    g_fallback->fallback(g_trace || trw__status_on()
                             ? torch::CppFunction::makeFromBoxedFunction<&trace_fallback>()
                             : torch::CppFunction::makeFallthrough());
  }
  auto tf = std::chrono::steady_clock::now();
  g_impl = new torch::Library(torch::Library::IMPL, "aten", kKey,
                                            __FILE__, __LINE__);
  std::unordered_map<std::string, Slot*> by_op;
  OpIndex index = index_ops();
  auto t1 = std::chrono::steady_clock::now();
  size_t n = trw__registry_count();
  for (size_t i = 0; i < n; i++) {
    trw__rewriter* r = trw__registry_at(i);
    if (!r || r->kind != TRW_KIND_FUNCTION || r->lang != TRW__LANG_C || !r->op)
      continue;
    for (auto& name : resolve(index, r->op)) {
      std::string full = full_name(name);
      if (by_op.count(full)) continue;
      Slot* slot = new Slot{full, g_slots->size()};
      g_slots->push_back(slot);
      by_op[full] = slot;
      g_impl->impl(full.c_str(), torch::CppFunction::makeFromBoxedFunctor(
                                     std::make_unique<Kernel>(slot)));
    }
  }
  g_generation = trw__registry_generation();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  trw__log(TRW__LOG_DEBUG, "operator kernels: fallthrough %.2f ms, index %.2f ms, %zu kernels %.2f ms",
           ms(t0, tf), ms(tf, t1), g_slots->size(), ms(t1, std::chrono::steady_clock::now()));
}

bool targets(const trw__rewriter* r, const std::string& op) {
  if (!r->op) return false;
  size_t n = std::strlen(r->op);
  return op.compare(0, n, r->op) == 0 && (op.size() == n || op[n] == '.');
}

// Chooses, for each installed operator, the rewriter of this thread's trace.  When
// several names reach one operator (aten::repeat and torch.Tensor.repeat),
// the stronger claim wins (trw__rank, then the later registration), as for
// Python homonyms, and both are named.  A user's rewriter of an operator
// this torch does not have (a misspelt name) fails the export, naming its
// site; a built-in's is reported as not found (some operators are newer
// than some torches).  Returns 0, or TRW_ENAME with err filled.
int select_all(const trw_env* env, char* err, size_t errlen) {
  size_t n;
  trw__rewriter* const* plan = trw__plan_winners(env, TRW_KIND_FUNCTION, &n);
  if (!plan) {
    trw__fmt(err, errlen, "torchrw: out of memory while selecting the operator rewriters");
    return TRW_ENOMEM;
  }
  std::vector<trw__rewriter*> chosen(g_slots->size(), nullptr);
  for (size_t i = 0; i < n; i++) {
    trw__rewriter* r = plan[i];
    if (r->lang != TRW__LANG_C || !r->op) continue;
    bool found = false;
    for (Slot* slot : *g_slots) {
      if (!targets(r, slot->op)) continue;
      found = true;
      trw__rewriter* had = chosen[slot->index];
      if (had && had != r) {
        bool stronger = trw__rank(r) > trw__rank(had) ||
                        (trw__rank(r) == trw__rank(had) && r->seq > had->seq);
        trw__rewriter* win = stronger ? r : had;
        trw__log(TRW__LOG_INFO, "%s: both %s (%s:%d) and %s (%s:%d) rewrite it; %s applies",
                 slot->op.c_str(), had->stable, had->file, had->line, r->stable, r->file,
                 r->line, win->stable);
        if (!stronger) continue;
      }
      chosen[slot->index] = r;
    }
    if (found) continue;
    if (r->builtin) {
      trw__report_not_found(r->stable, "no such torch operator");
      continue;
    }
    trw__fmt(err, errlen,
             "torchrw: rewriter %s (%s:%d) names %s, which torch %d.%d does not have "
             "(misspelt? see `torchrw list`)",
             r->stable, r->file, r->line, r->op, env->torch_major, env->torch_minor);
    return TRW_ENAME;
  }
  t_selected.swap(chosen);
  return 0;
}

}  // namespace

int& depth() {
  static thread_local int d = 0;
  return d;
}

int& unknowable() {
  static thread_local int n = 0;
  return n;
}

}  // namespace trw

extern "C" int trw__bridge_begin(const trw_env* env, const trw__bridge_options* opts,
                                  char* err, size_t errlen) {
  try {
    if (!trw::g_fallback && opts) trw::g_where = opts->where;
    // Every activation: the stream is the process's own after a fork, and
    // none once it was turned off (it named the export's output file).
    if (opts) trw::g_trace = opts->trace;
    if (trw::g_generation != trw__registry_generation()) trw::install();
    trw::t_env = env;
    int rc = trw::select_all(env, err, errlen);
    if (rc != 0) return rc;
    c10::impl::tls_set_dispatch_key_included(trw::kKey, true);
    return 0;
  } catch (const c10::Error& e) {
    trw__fmt(err, errlen, "torchrw: cannot install operator kernels: %s",
             e.what_without_backtrace());
  } catch (const std::exception& e) {
    trw__fmt(err, errlen, "torchrw: cannot install operator kernels: %s",
             e.what());
  }
  return TRW_EOP;
}

extern "C" void trw__bridge_end(void) {
  c10::impl::tls_set_dispatch_key_included(trw::kKey, false);
}

extern "C" void trw__bridge_capture(int on) {
  trw::t_capturing += on ? 1 : -1;
  c10::impl::tls_set_dispatch_key_excluded(trw::kKey, trw::t_capturing > 0);
}

extern "C" void trw__bridge_lower(int on) { trw::t_lowering += on ? 1 : -1; }

extern "C" size_t trw__bridge_kernel_count(void) { return trw::g_slots->size(); }
