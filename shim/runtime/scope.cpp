// scope.cpp - the runtime's entry points for the preloaded shim.  C++ only
// because enter must raise: a std::runtime_error thrown here crosses the
// shim's C frame (built with -fexceptions) and reaches Python through
// pybind11 as RuntimeError, failing the export with torchrw's message.

#include <stdexcept>

#include "../preload/runtime_api.h"
#include "runtime.h"

namespace {

void enter() {
  char err[2048];
  if (trw__activate(err, sizeof err) != 0) throw std::runtime_error(err);
}

void leave() { trw__deactivate(); }

const trw__runtime_api kApi = {TRW__RUNTIME_API_VERSION, enter, leave};

}  // namespace

extern "C" __attribute__((visibility("default"))) const trw__runtime_api*
trw__runtime_api_get(void) {
  return &kApi;
}
