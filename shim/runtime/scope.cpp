// scope.cpp - the per-thread bracket around traces, and the runtime's entry
// point for the preloaded shim.  C++ for two reasons: a std::runtime_error
// thrown here reaches Python through pybind11 as RuntimeError, failing the
// export with torchrw's message; and a destructor ends rewriting on every
// way out of the trace, also when the model raises.

#include <Python.h>

#include <stdexcept>

#include "../adapter/runtime_api.h"
#include "runtime.h"

namespace {

struct Scope {
  Scope() {
    char err[8192];
    if (trw__scope_enter(err, sizeof err) != 0) throw std::runtime_error(err);
  }
  ~Scope() { trw__scope_leave(); }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

void* trace(trw__trace_fn original, void* result, void* inputs,
            void* traced_fn, void* lookup_fn, bool strict, bool force_outplace,
            void* self, void* argument_names) {
  Scope scope;
  return original(result, inputs, traced_fn, lookup_fn, strict, force_outplace,
                  self, argument_names);
}

// torch is being imported: bracket torch.export's entry points once they
// are.  A failure is logged; the exports it concerns then run plainly.
void torch_imported() {
  PyGILState_STATE gil = PyGILState_Ensure();
  if (trw__hooks_install(TRW__HOOKS_PROCESS, 0) != 0) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject* s = value ? PyObject_Str(value) : nullptr;
    const char* msg = s ? PyUnicode_AsUTF8(s) : nullptr;
    trw__log(TRW__LOG_ERROR, "cannot hook torch.export's entry points: %s",
             msg ? msg : "unknown error");
    Py_XDECREF(s);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    PyErr_Clear();
  }
  PyGILState_Release(gil);
}

const trw__runtime_api kApi = {TRW__RUNTIME_API_VERSION, TRW_TORCH_VERSION, trace,
                               torch_imported};

}  // namespace

extern "C" int trw__scope_enter(char* err, size_t errlen) {
  if (trw__tracing_depth() == 0) {
    int rc = trw__activate(err, errlen);
    if (rc != 0) return rc;
  }
  trw__tracing_enter();
  return 0;
}

extern "C" void trw__scope_leave(void) {
  if (trw__tracing_depth() == 0) return;
  trw__tracing_leave();
  if (trw__tracing_depth() == 0) trw__deactivate();
}

extern "C" int trw__scope_depth(void) { return trw__tracing_depth(); }

extern "C" __attribute__((visibility("default"))) const trw__runtime_api*
trw__runtime_api_get(void) {
  return &kApi;
}
