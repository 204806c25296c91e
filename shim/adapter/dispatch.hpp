// dispatch.hpp - the dispatch key torchrw's operator kernels sit at.
// Internal C++, part of the torch adapter.
#pragma once

#include <c10/core/DispatchKey.h>
#include <torch/csrc/api/include/torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
#include <c10/core/impl/TorchDispatchModeTLS.h>
#endif

namespace trw {

// Above Tracer, so the original reached by redispatching below it is
// recorded by the tracer, and otherwise unused outside torch's own tests.
// The same key, in the same place, from libtorch 1.13 to 2.14.
constexpr c10::DispatchKey kKey = c10::DispatchKey::TESTING_ONLY_GenericMode;

static_assert(static_cast<int>(kKey) > static_cast<int>(c10::DispatchKey::Tracer),
              "torchrw's dispatch key must sit above the tracer's");

// Whether make_fx is recording this thread's calls into a graph: its
// proxy mode is on the dispatch mode stack.  torch.export lowers a program
// (run_decompositions) by running it more than once, and only the pass under
// the proxy mode makes the graph: the others (aot_autograd's metadata pass,
// fake-tensor set-up) call operators that no graph keeps.  Infra modes are
// keyed from torch 2.1; torch.export's lowering needs 2.1 or newer anyway.
inline bool fx_recording() {
#if TORCH_VERSION_MAJOR >= 2 && (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 1)
  return c10::impl::TorchDispatchModeTLS::get_mode(
             c10::impl::TorchDispatchModeKey::PROXY)
      .has_value();
#else
  return false;
#endif
}

}  // namespace trw
