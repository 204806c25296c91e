// values.cpp - the C API over IValues and operator calls (torchrw.h).

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>

#include <cstdarg>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "frame.hpp"

namespace trw {

trw_value* make_value(trw_ctx* ctx, c10::IValue iv) {
  Frame* f = frame_of(ctx);
  if (!f) return nullptr;
  try {
    f->arena.push_back(trw_value{std::move(iv)});
    return &f->arena.back();
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

namespace {

c10::IValue unpack_returns(torch::jit::Stack& stack) {
  if (stack.empty()) return c10::IValue();
  if (stack.size() == 1) return std::move(stack[0]);
  return c10::ivalue::Tuple::create(std::vector<c10::IValue>(
      std::make_move_iterator(stack.begin()),
      std::make_move_iterator(stack.end())));
}

// Whether v can be passed where the schema expects type t.  Lenient where
// torch converts (an int for a float), strict where it would fail later.
bool accepts(const c10::TypePtr& t, const c10::IValue& v) {
  switch (t->kind()) {
    case c10::TypeKind::OptionalType:
      return v.isNone() ||
             accepts(t->castRaw<c10::OptionalType>()->getElementType(), v);
    case c10::TypeKind::TensorType:
      return v.isTensor();
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
      return v.isInt() || v.isSymInt() || v.isBool();
    case c10::TypeKind::FloatType:
      return v.isDouble() || v.isInt();
    case c10::TypeKind::BoolType:
      return v.isBool();
    case c10::TypeKind::NumberType:
      return v.isInt() || v.isDouble() || v.isBool();
    case c10::TypeKind::StringType:
      return v.isString();
    case c10::TypeKind::ListType: {
      auto elem = t->castRaw<c10::ListType>()->getElementType();
      switch (elem->kind()) {
        case c10::TypeKind::IntType:
        case c10::TypeKind::SymIntType:
          return v.isIntList() || v.isInt();
        case c10::TypeKind::FloatType:
          return v.isDoubleList();
        case c10::TypeKind::TensorType:
          return v.isTensorList();
        default:
          return v.isList();
      }
    }
    default:
      return true;
  }
}

// Fills in defaults and checks types; false when the schema does not fit.
bool bind(const c10::FunctionSchema& schema, torch::jit::Stack& stack) {
  const auto& params = schema.arguments();
  if (stack.size() > params.size()) return false;
  for (size_t i = 0; i < params.size(); i++) {
    if (i >= stack.size()) {
      if (!params[i].default_value()) return false;
      stack.push_back(*params[i].default_value());
      continue;
    }
    if (!accepts(params[i].type(), stack[i])) return false;
    // An int where a float or an int list is expected: convert, as Python
    // does for torch's own bindings.
    auto k = params[i].type()->kind();
    if (k == c10::TypeKind::FloatType && stack[i].isInt())
      stack[i] = static_cast<double>(stack[i].toInt());
    else if (k == c10::TypeKind::ListType && stack[i].isInt())
      stack[i] = c10::List<int64_t>({stack[i].toInt()});
  }
  return true;
}

std::mutex g_ops_lock;
std::unordered_map<std::string, std::vector<c10::OperatorHandle>> g_ops;

// The overloads "aten::x" may mean, the default one first.
const std::vector<c10::OperatorHandle>& overloads(const std::string& qual) {
  std::lock_guard<std::mutex> guard(g_ops_lock);
  auto it = g_ops.find(qual);
  if (it != g_ops.end()) return it->second;
  std::vector<c10::OperatorHandle> found;
  auto& d = c10::Dispatcher::singleton();
  auto sep = qual.find("::");
  auto dot = qual.find('.', sep == std::string::npos ? 0 : sep + 2);
  if (dot != std::string::npos) {
    if (auto h = d.findSchema({qual.substr(0, dot), qual.substr(dot + 1)}))
      found.push_back(*h);
  } else {
    if (auto h = d.findSchema({qual, ""})) found.push_back(*h);
    for (auto& name : d.getAllOpNames())
      if (name.name == qual && !name.overload_name.empty())
        if (auto h = d.findSchema(name)) found.push_back(*h);
  }
  return g_ops.emplace(qual, std::move(found)).first->second;
}

torch::jit::Stack stack_of(size_t nargs, trw_value* const args[]) {
  torch::jit::Stack stack;
  stack.reserve(nargs + 4);
  for (size_t i = 0; i < nargs; i++)
    stack.push_back(args[i] ? args[i]->iv : c10::IValue());
  return stack;
}

}  // namespace

int guarded_call(trw_ctx* ctx, const char* what, const c10::OperatorHandle& op,
                 const c10::DispatchKeySet* below, torch::jit::Stack& stack,
                 trw_value** result) {
  try {
    if (below)
      op.redispatchBoxed(*below, &stack);
    else
      op.callBoxed(&stack);
  } catch (const c10::Error& e) {
    unknowable()++;  // torch's own error: under torch.export, often fake data
    return trw_error(ctx, TRW_EOP, "%s failed: %s", what,
                     e.what_without_backtrace());
  } catch (const std::exception& e) {
    // A rewriter further in failed: its message already says everything.
    if (std::strncmp(e.what(), "torchrw: ", 9) == 0)
      return trw_error(ctx, TRW_EOP, "%s", e.what());
    unknowable()++;  // a Python error of torch's dispatch modes (fake tensors)
    return trw_error(ctx, TRW_EOP, "%s failed: %s", what,
                     *e.what() ? e.what() : "a Python error in torch's dispatch");
  }
  trw_value* v = make_value(ctx, unpack_returns(stack));
  if (!v) return trw_error(ctx, TRW_ENOMEM, "out of memory");
  if (result) *result = v;
  return 0;
}

int call_arg(trw_ctx* ctx, size_t index, const char* what, const c10::IValue** out) {
  Frame* f = frame_of(ctx);
  if (!f || !f->op) return trw_error(ctx, TRW_EINVAL, "%s is for operator rewriters", what);
  size_t n = f->op->schema().arguments().size();
  if (index >= n || index >= f->arena.size())
    return trw_error(ctx, TRW_ERANGE, "%s has %zu arguments, not %zu", trw_ctx_op(ctx), n,
                     index + 1);
  *out = &f->arena[index].iv;
  return 0;
}

}  // namespace trw

using trw::frame_of;
using trw::make_value;

extern "C" {

int trw_call(trw_ctx* ctx, const char* op, size_t nargs,
             trw_value* const args[], trw_value** result) {
  if (!frame_of(ctx) || !op || (nargs && !args))
    return trw_error(ctx, TRW_EINVAL, "trw_call needs a context and an op");
  if (trw::depth() >= trw::kMaxDepth)
    return trw_error(ctx, TRW_ERECURSION, "rewriters nested more than %d deep",
                     trw::kMaxDepth);
  frame_of(ctx)->calls++;
  std::string qual(op);
  if (qual.find("::") == std::string::npos) qual = "aten::" + qual;
  try {
    const auto& candidates = trw::overloads(qual);
    if (candidates.empty())
      return trw_error(ctx, TRW_ENOTFOUND, "no operator named %s", qual.c_str());
    for (const auto& h : candidates) {
      auto stack = trw::stack_of(nargs, args);
      if (!trw::bind(h.schema(), stack)) continue;
      return trw::guarded_call(ctx, qual.c_str(), h, nullptr, stack, result);
    }
    return trw_error(ctx, TRW_ENOTFOUND,
                     "no overload of %s accepts these %zu arguments (schema: %s)",
                     qual.c_str(), nargs,
                     c10::toString(candidates[0].schema()).c_str());
  } catch (const std::exception& e) {
    return trw_error(ctx, TRW_EOP, "%s: %s", qual.c_str(), e.what());
  }
}

int trw_call_original(trw_ctx* ctx, size_t nargs, trw_value* const args[],
                      trw_value** result) {
  trw::Frame* f = frame_of(ctx);
  if (!f || (nargs && !args))
    return trw_error(ctx, TRW_EINVAL, "trw_call_original needs a context");
  if (!f->op)
    return trw_error(ctx, TRW_EINVAL,
                     "trw_call_original is for operator rewriters; a module "
                     "rewriter calls trw_call_original_forward");
  f->originals++;
  try {
    trw::give_stash(*f, nargs, args);
    auto stack = trw::stack_of(nargs, args);
    if (!trw::bind(f->op->schema(), stack))
      return trw_error(ctx, TRW_ETYPE,
                       "the original %s does not accept these %zu arguments "
                       "(schema: %s)",
                       trw_ctx_op(ctx), nargs,
                       c10::toString(f->op->schema()).c_str());
    return trw::guarded_call(ctx, trw_ctx_op(ctx), *f->op, &f->below, stack,
                             result);
  } catch (const std::exception& e) {
    return trw_error(ctx, TRW_EOP, "%s: %s", trw_ctx_op(ctx), e.what());
  }
}

int trw_decline(trw_ctx* ctx, size_t nargs, trw_value* const args[],
                trw_value** result, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  trw__log_declined(ctx, "the original", fmt, ap);
  va_end(ap);
  return trw_call_original(ctx, nargs, args, result);
}

int trw_trace_arg_is_constant(trw_ctx* ctx, size_t index) {
  const c10::IValue* arg = nullptr;
  if (int rc = trw::call_arg(ctx, index, "trw_trace_arg_is_constant", &arg)) return rc;
  if (arg->isTensor()) return 0;
  return trw::arg_traced(*frame_of(ctx), index) ? 0 : 1;
}

trw_value_kind trw_value_kind_of(const trw_value* v) {
  if (!v || v->iv.isNone()) return TRW_VALUE_NONE;
  const auto& iv = v->iv;
  if (iv.isTensor()) return TRW_VALUE_TENSOR;
  if (iv.isInt() || iv.isSymInt()) return TRW_VALUE_INT;
  if (iv.isDouble()) return TRW_VALUE_DOUBLE;
  if (iv.isBool()) return TRW_VALUE_BOOL;
  if (iv.isString()) return TRW_VALUE_STRING;
  if (iv.isIntList()) return TRW_VALUE_INTS;
  if (iv.isDoubleList()) return TRW_VALUE_DOUBLES;
  if (iv.isTensorList()) return TRW_VALUE_TENSORS;
  if (iv.isTuple()) return TRW_VALUE_TUPLE;
  return TRW_VALUE_OTHER;
}

trw_value* trw_none(trw_ctx* ctx) { return make_value(ctx, c10::IValue()); }
trw_value* trw_int(trw_ctx* ctx, int64_t i) { return make_value(ctx, i); }
trw_value* trw_double(trw_ctx* ctx, double d) { return make_value(ctx, d); }
trw_value* trw_bool(trw_ctx* ctx, int b) { return make_value(ctx, b != 0); }

trw_value* trw_ints(trw_ctx* ctx, const int64_t* v, size_t n) {
  if (n && !v) return nullptr;
  try {
    return make_value(ctx, c10::List<int64_t>(std::vector<int64_t>(v, v + n)));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

trw_value* trw_doubles(trw_ctx* ctx, const double* v, size_t n) {
  if (n && !v) return nullptr;
  try {
    return make_value(ctx, c10::List<double>(std::vector<double>(v, v + n)));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

trw_value* trw_string(trw_ctx* ctx, const char* s) {
  if (!s) return nullptr;
  try {
    return make_value(ctx, std::string(s));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

trw_value* trw_dtype_value(trw_ctx* ctx, trw_dtype dtype) {
  at::ScalarType st;
  switch (dtype) {
    case TRW_DTYPE_FLOAT32: st = at::kFloat; break;
    case TRW_DTYPE_FLOAT64: st = at::kDouble; break;
    case TRW_DTYPE_FLOAT16: st = at::kHalf; break;
    case TRW_DTYPE_BFLOAT16: st = at::kBFloat16; break;
    case TRW_DTYPE_INT64: st = at::kLong; break;
    case TRW_DTYPE_INT32: st = at::kInt; break;
    case TRW_DTYPE_INT16: st = at::kShort; break;
    case TRW_DTYPE_INT8: st = at::kChar; break;
    case TRW_DTYPE_UINT8: st = at::kByte; break;
    case TRW_DTYPE_BOOL: st = at::kBool; break;
    default: return nullptr;
  }
  return make_value(ctx, static_cast<int64_t>(st));
}

trw_value* trw_tensors(trw_ctx* ctx, trw_value* const tensors[], size_t n) {
  try {
    c10::List<at::Tensor> list;
    for (size_t i = 0; i < n; i++) {
      if (!tensors || !tensors[i] || !tensors[i]->iv.isTensor()) return nullptr;
      list.push_back(tensors[i]->iv.toTensor());
    }
    return make_value(ctx, std::move(list));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

int trw_get_int(const trw_value* v, int64_t* out) {
  if (!v || !out) return TRW_EINVAL;
  if (v->iv.isInt()) *out = v->iv.toInt();
  else if (v->iv.isBool()) *out = v->iv.toBool();
  else if (v->iv.isSymInt() && !v->iv.toSymInt().is_symbolic())
    *out = v->iv.toSymInt().as_int_unchecked();
  else if (v->iv.isSymInt()) {
    trw::unknowable()++;
    return TRW_ESYMBOLIC;
  }
  else return TRW_ETYPE;
  return 0;
}

int trw_get_double(const trw_value* v, double* out) {
  if (!v || !out) return TRW_EINVAL;
  if (v->iv.isDouble()) *out = v->iv.toDouble();
  else if (v->iv.isInt()) *out = static_cast<double>(v->iv.toInt());
  else return TRW_ETYPE;
  return 0;
}

int trw_get_bool(const trw_value* v, int* out) {
  if (!v || !out) return TRW_EINVAL;
  if (!v->iv.isBool()) return TRW_ETYPE;
  *out = v->iv.toBool();
  return 0;
}

int trw_get_ints(const trw_value* v, int64_t* buf, size_t cap, size_t* n) {
  if (!v || !n || (cap && !buf)) return TRW_EINVAL;
  if (v->iv.isIntList()) {
    auto list = v->iv.toIntList();
    *n = list.size();
    if (list.size() > cap) return TRW_ERANGE;
    for (size_t i = 0; i < list.size(); i++) buf[i] = list.get(i);
    return 0;
  }
  if (!v->iv.isList()) return TRW_ETYPE;
  // SymInt[] and other generic lists: every element must be a plain int.
  auto list = v->iv.toListRef();
  *n = list.size();
  for (const auto& e : list) {
    if (e.isSymInt() && e.toSymInt().is_symbolic()) {
      trw::unknowable()++;
      return TRW_ESYMBOLIC;
    }
    if (!e.isInt() && !e.isSymInt()) return TRW_ETYPE;
  }
  if (list.size() > cap) return TRW_ERANGE;
  for (size_t i = 0; i < list.size(); i++)
    buf[i] = list[i].isInt() ? list[i].toInt()
                             : list[i].toSymInt().as_int_unchecked();
  return 0;
}

int trw_get_string(const trw_value* v, const char** out) {
  if (!v || !out) return TRW_EINVAL;
  if (!v->iv.isString()) return TRW_ETYPE;
  *out = v->iv.toStringRef().c_str();
  return 0;
}

int trw_is_none(const trw_value* v) { return !v || v->iv.isNone(); }

int trw_len(const trw_value* v, size_t* n) {
  if (!v || !n) return TRW_EINVAL;
  if (v->iv.isTuple()) *n = v->iv.toTupleRef().elements().size();
  else if (v->iv.isList()) *n = v->iv.toListRef().size();
  else return TRW_ETYPE;
  return 0;
}

trw_value* trw_item(trw_ctx* ctx, const trw_value* v, size_t i) {
  if (!v) return nullptr;
  if (v->iv.isTuple()) {
    const auto& e = v->iv.toTupleRef().elements();
    return i < e.size() ? make_value(ctx, e[i]) : nullptr;
  }
  if (v->iv.isList()) {
    auto e = v->iv.toListRef();
    return i < e.size() ? make_value(ctx, e[i]) : nullptr;
  }
  return nullptr;
}

const trw_tensor* trw_value_tensor(const trw_value* v) {
  return v && v->iv.isTensor() ? reinterpret_cast<const trw_tensor*>(v)
                               : nullptr;
}

static const at::Tensor* tensor_of(const trw_tensor* t) {
  return t ? &reinterpret_cast<const trw_value*>(t)->iv.toTensor() : nullptr;
}

int trw_tensor_dim(const trw_tensor* t) {
  const at::Tensor* x = tensor_of(t);
  return x && x->defined() ? static_cast<int>(x->dim()) : -1;
}

int trw_tensor_size(const trw_tensor* t, int i, int64_t* out) {
  const at::Tensor* x = tensor_of(t);
  if (!x || !out || !x->defined()) return TRW_EINVAL;
  int64_t d = x->dim();
  int64_t k = i < 0 ? i + d : i;
  if (k < 0 || k >= d) return TRW_ERANGE;
  const c10::SymInt& s = x->sym_sizes()[k];
  if (s.is_symbolic()) {
    trw::unknowable()++;
    return TRW_ESYMBOLIC;
  }
  *out = s.as_int_unchecked();
  return 0;
}

trw_dtype trw_tensor_dtype(const trw_tensor* t) {
  const at::Tensor* x = tensor_of(t);
  if (!x || !x->defined()) return TRW_DTYPE_UNKNOWN;
  switch (x->scalar_type()) {
    case at::kFloat: return TRW_DTYPE_FLOAT32;
    case at::kDouble: return TRW_DTYPE_FLOAT64;
    case at::kHalf: return TRW_DTYPE_FLOAT16;
    case at::kBFloat16: return TRW_DTYPE_BFLOAT16;
    case at::kLong: return TRW_DTYPE_INT64;
    case at::kInt: return TRW_DTYPE_INT32;
    case at::kShort: return TRW_DTYPE_INT16;
    case at::kChar: return TRW_DTYPE_INT8;
    case at::kByte: return TRW_DTYPE_UINT8;
    case at::kBool: return TRW_DTYPE_BOOL;
    default: return TRW_DTYPE_UNKNOWN;
  }
}

const char* trw_dtype_name(trw_dtype d) {
  static const char* const names[] = {"unknown", "float32", "float64",
                                      "float16", "bfloat16", "int64",
                                      "int32",   "int16",   "int8",
                                      "uint8",   "bool"};
  return (unsigned)d < sizeof names / sizeof names[0] ? names[d] : "unknown";
}

}  // extern "C"
