// frame.hpp - one rewriter call as the bridge sees it.  Internal C++.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>

#include <deque>
#include <string>
#include <vector>

#include "../adapter/dispatch.hpp"
#include "../core/core.h"

// trw_value is an IValue; handles point into the frame's arena.
struct trw_value {
  c10::IValue iv;
};

namespace torch {
namespace jit {
struct Value;
}
}  // namespace torch

namespace trw {

// An argument of the rewritten call that torch's tracer had stashed
// (stash.cpp): an int list with traced elements, or a traced value.
struct Stashed {
  size_t index = 0;                         // in the schema
  bool is_value = false;
  bool traced = false;                      // some element is traced
  std::vector<torch::jit::Value*> list;     // per element; nullptr: constant
  torch::jit::Value* value = nullptr;
};

// Rewriters may call operators that are rewritten in turn; past this depth
// the call fails instead of overflowing the stack.
constexpr int kMaxDepth = 64;

// One rewriter call: an operator's (op and below set) or a module's
// (module and the forward it replaces, both PyObject *).
struct Frame {
  c10::optional<c10::OperatorHandle> op;
  c10::DispatchKeySet below;  // keys under torchrw's, for the original
  std::deque<trw_value> arena;  // deque: handles stay put as it grows
  void* module = nullptr;
  void* forward = nullptr;
  // What the rewriter did: a call that only ran the original (no other
  // operator, no graph edit) passed through and is not counted as fired.
  int calls = 0;
  int originals = 0;
  // The call's entries of the tracer's argument stash (stash.cpp).
  std::vector<Stashed> stashed;
};

inline Frame* frame_of(trw_ctx* ctx) {
  return ctx ? static_cast<Frame*>(ctx->frame) : nullptr;
}

// Allocates a value in the call's arena; nullptr without a frame.
trw_value* make_value(trw_ctx* ctx, c10::IValue iv);

// Runs a boxed call and turns every exception into an error code with the
// message kept in ctx.
int guarded_call(trw_ctx* ctx, const char* what, const c10::OperatorHandle& op,
                 const c10::DispatchKeySet* below, torch::jit::Stack& stack,
                 trw_value** result);

// The tracer's argument stash around a rewriter call (stash.cpp): the
// call's entries are taken off before the rewriter runs, given back to the
// original for the arguments it gets unchanged, and the rest dropped.
void take_stash(Frame& frame);
bool arg_traced(const Frame& frame, size_t index);
// Argument index of the operator call being rewritten, in *out: 0, or
// the code of trw_error() (TRW_EINVAL outside an operator call, TRW_ERANGE
// past the last argument).  what names the caller in the message.
int call_arg(trw_ctx* ctx, size_t index, const char* what, const c10::IValue** out);
// The traced 0-dim tensor behind an int argument, or element elem of an
// int list argument, as the tracer stashed it; nullptr for a constant.
torch::jit::Value* traced_element(const Frame& frame, size_t index, size_t elem);
// A 0-dim int64 tensor holding example whose trace is trace (the tracer
// records nothing for making it).
at::Tensor traced_int(int64_t example, torch::jit::Value* trace);
void give_stash(Frame& frame, size_t nargs, trw_value* const args[]);
void drop_stash(Frame& frame);

// Current rewriter nesting depth on this thread.
int& depth();

// How many times, on this thread, a rewriter asked for something torch.export
// does not know while it traces: a symbolic size or int, or the data of a
// fake tensor (an operator raised).  The bridge compares it around a
// rewriter call to tell "cannot apply here" from a rewriter's own error.
int& unknowable();

}  // namespace trw
