/*
 * runtime_api.h - what the preloaded shim asks of the runtime it loads.
 * The contract between the layers, so it sits in shim/adapter: shared by
 * shim/preload (which loads a runtime) and shim/runtime (which is one).
 *
 * A runtime is built per torch series and named after it,
 * libtorchrw_runtime-torch2.14.so, so that runtimes for several torches
 * sit side by side beside libtorchrw.so; the shim loads the one for the
 * torch in the process.
 */
#ifndef TRW_RUNTIME_API_H
#define TRW_RUNTIME_API_H

#define TRW__RUNTIME_PREFIX "libtorchrw_runtime-torch"
#define TRW__RUNTIME_SUFFIX ".so"
#define TRW__RUNTIME_SYMBOL "trw__runtime_api_get"
#define TRW__RUNTIME_API_VERSION 4

/* The library that raises the shim's errors as C++ exceptions (Python
 * RuntimeError for the caller) when no runtime can be loaded; loaded only
 * then. */
#define TRW__RAISE_SONAME "libtorchrw_raise.so"
#define TRW__RAISE_SYMBOL "trw__raise"
typedef void (*trw__raise_fn)(const char *message);

#include <stdbool.h>

#include "entry_points.h"

typedef struct trw__runtime_api {
  int version;
  /* The torch the runtime was built for ("2.14.1+cu130"). */
  const char *torch_version;
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
  /*
   * torch is being imported (its _C module was just built; the caller
   * holds the GIL): arranges for torch.export's and torch.onnx's entry
   * points to be bracketed once they are imported.  Never fails the
   * import: a problem is kept and fails the exports.
   */
  void (*torch_imported)(void);
} trw__runtime_api;

typedef const trw__runtime_api *(*trw__runtime_api_fn)(void);

#endif
