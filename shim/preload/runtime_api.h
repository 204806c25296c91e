/*
 * runtime_api.h - what the preloaded shim asks of the runtime it loads.
 * Internal: shared by shim/preload and shim/runtime only.
 */
#ifndef TRW_RUNTIME_API_H
#define TRW_RUNTIME_API_H

#define TRW__RUNTIME_SONAME "libtorchrw_runtime.so"
#define TRW__RUNTIME_SYMBOL "trw__runtime_api_get"
#define TRW__RUNTIME_API_VERSION 1

typedef struct trw__runtime_api {
  int version;
  /* Start rewriting for the outermost trace of this thread.  Throws a C++
   * exception (a Python RuntimeError for the caller) when the export must
   * not go ahead: bad config, unknown backend, broken plugin. */
  void (*enter)(void);
  /* End it: restore everything, write the report.  Never throws. */
  void (*leave)(void);
} trw__runtime_api;

typedef const trw__runtime_api *(*trw__runtime_api_fn)(void);

#endif
