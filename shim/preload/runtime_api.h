/*
 * runtime_api.h - what the preloaded shim asks of the runtime it loads.
 * Internal: shared by shim/preload and shim/runtime only.
 */
#ifndef TRW_RUNTIME_API_H
#define TRW_RUNTIME_API_H

#define TRW__RUNTIME_SONAME "libtorchrw_runtime.so"
#define TRW__RUNTIME_SYMBOL "trw__runtime_api_get"
#define TRW__RUNTIME_API_VERSION 2

#include <stdbool.h>

/* torch::jit::tracer::trace as C sees it (see shim/preload/preload.c). */
typedef void *(*trw__trace_fn)(void *result, void *inputs, void *traced_fn,
                               void *lookup_fn, bool strict,
                               bool force_outplace, void *self,
                               void *argument_names);

typedef struct trw__runtime_api {
  int version;
  /*
   * Runs original(...) with rewriting on for the outermost trace of this
   * thread, and off again when it returns or throws.  Throws a C++
   * exception (a Python RuntimeError for the caller) when the export must
   * not go ahead: bad config, unknown backend, broken plugin.  The
   * bracketing lives here, in C++, so that the preloaded C shim needs no
   * unwinding support of its own (no libgcc_s in every process).
   */
  void *(*trace)(trw__trace_fn original, void *result, void *inputs,
                 void *traced_fn, void *lookup_fn, bool strict,
                 bool force_outplace, void *self, void *argument_names);
} trw__runtime_api;

typedef const trw__runtime_api *(*trw__runtime_api_fn)(void);

#endif
