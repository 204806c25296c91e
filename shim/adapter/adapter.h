/*
 * adapter.h - what torchrw knows about the torch a runtime is built for.
 *
 * Everything that depends on torch's version lives in shim/adapter/: the
 * mangled name interposed (entry_points.h), the dispatch key (dispatch.hpp),
 * torch.onnx's private modules the Python glue uses and the trace entry
 * points RewriterContext hooks (adapter.c), and the version checks.  The
 * runtime is compiled per torch, with TRW_TORCH_MAJOR/MINOR/VERSION set by
 * CMake from the interpreter it was configured with.
 *
 * Plain C, no torch and no Python headers: data and string checks only.
 */
#ifndef TRW_ADAPTER_H
#define TRW_ADAPTER_H

#include <stddef.h>

#include "versions.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A Python attribute torchrw replaces for a while: owner.attr. */
typedef struct trw__py_attr {
  const char *owner; /* dotted path of a module or class */
  const char *attr;
} trw__py_attr;

/* What a hooked export entry point does (see runtime/hooks.c). */
typedef enum trw__hook_role {
  TRW__HOOK_EXPORT,  /* torch.onnx.export: brackets the export when it goes through torch.export */
  TRW__HOOK_CAPTURE, /* torch.export.export & co: the model's Python runs, operators are recorded */
  TRW__HOOK_LOWER,   /* ExportedProgram.run_decompositions: the graph is retraced to ATen */
  TRW__HOOK_WRITE,   /* the exporter serialises the model: the status line's "writing" */
  TRW__HOOK_CONVERT  /* the exporter converts its graph down to the opset asked for */
} trw__hook_role;

typedef struct trw__hook {
  const char *owner; /* dotted path of a module or class */
  const char *attr;
  trw__hook_role role;
} trw__hook;

typedef struct trw__adapter {
  /* The torch this runtime was built for: "2.14.1+cu130", 2, 14. */
  const char *version;
  int major, minor;
  /* torch.onnx's TorchScript exporter (private modules). */
  const char *onnx_globals;      /* GLOBALS: in_onnx_export, export_onnx_opset_version */
  const char *onnx_registration; /* registry: register/unregister/get_function_group */
  const char *symbolic_helper;   /* parse_args, _get_const, _maybe_get_const ... */
  const char *onnx_constants;    /* the module holding the newest opset: */
  const char *max_opset_attr;    /* ... this attribute of it */
  int min_opset;                 /* the oldest opset the registry knows */
  /* The C++ trace entry points as Python sees them, hooked by
   * RewriterContext (no preloading). */
  const trw__py_attr *trace_hooks;
  size_t ntrace_hooks;
  /* torch.export and torch.onnx's exporter on it (2.x): the entry points
   * torchrw brackets, none before torch.export existed. */
  const trw__hook *export_hooks;
  size_t nexport_hooks;
  /* Where each exporter starts serialising the model (TRW__HOOK_WRITE),
   * hooked only when `torchrw run` shows its status line. */
  const trw__hook *write_hooks;
  size_t nwrite_hooks;
  /* torch.onnx.export(dynamo=...) when the caller does not say. */
  int dynamo_default;
  /* The exporter's own default opset (the dynamo path), read as
   * onnx_constants.<default_opset_attr>; NULL where there is none. */
  const char *default_opset_attr;
  /* The exporter builds the graph at this opset at least and converts it
   * to the requested one afterwards: build_opset_module.<build_opset_attr>.
   * Symbolics on that path make nodes for the opset the graph is built at. */
  const char *build_opset_module;
  const char *build_opset_attr;
} trw__adapter;

/* The facts for the runtime's torch.  Never NULL. */
const trw__adapter *trw__adapter_get(void);

/* "2.14" from "2.14.1+cu130" into out; 0, or -1 when version does not
 * start with major.minor. */
int trw__adapter_series(const char *version, char *out, size_t len);

/*
 * Checks that the torch in the process (torch.__version__, as given) is
 * the one this runtime was built for.  Returns 0, or -1 with a message in
 * err naming both versions and what to do.
 */
int trw__adapter_check_torch(const char *version, char *err, size_t len);

#ifdef __cplusplus
}
#endif

#endif
