// dispatch.hpp - the dispatch key torchrw's operator kernels sit at.
// Internal C++, part of the torch adapter.
#pragma once

#include <c10/core/DispatchKey.h>

namespace trw {

// Above Tracer, so the original reached by redispatching below it is
// recorded by the tracer, and otherwise unused outside torch's own tests.
// The same key, in the same place, from libtorch 1.13 to 2.14.
constexpr c10::DispatchKey kKey = c10::DispatchKey::TESTING_ONLY_GenericMode;

static_assert(static_cast<int>(kKey) > static_cast<int>(c10::DispatchKey::Tracer),
              "torchrw's dispatch key must sit above the tracer's");

}  // namespace trw
