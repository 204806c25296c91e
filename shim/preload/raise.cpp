// raise.cpp - libtorchrw_raise.so: turns the preloaded shim's message into
// a C++ exception, which torch's Python bindings raise as RuntimeError.
// The shim is C and carries no unwinder; it loads this library only when
// an export must fail and no runtime is there to fail it (no runtime built
// for the torch in the process).  libstdc++ is already loaded then: torch
// brought it.

#include <stdexcept>

extern "C" __attribute__((visibility("default"))) void trw__raise(const char* message) {
  throw std::runtime_error(message ? message : "torchrw: error");
}
