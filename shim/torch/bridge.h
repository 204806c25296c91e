/*
 * bridge.h - the C face of the torch bridge (bridge.cpp, values.cpp), the
 * only C++ in torchrw.  Internal to the runtime.
 */
#ifndef TRW_BRIDGE_H
#define TRW_BRIDGE_H

#include <stddef.h>
#include <stdio.h>

#include "../core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Starts rewriting operators on this thread for one trace: installs
 * dispatcher kernels for the operators that function rewriters target
 * (again only when the registry changed), selects the rewriter of each for
 * env, and puts torchrw's dispatch key in the thread's included set.
 * Names that are not operators are reported as not found.  Returns 0, or
 * a negative code with err filled.
 */
typedef struct trw__bridge_options {
  /* The operator trace (TORCHRW_TRACE): every operator the trace calls is
   * written here; NULL for none.  Fixed by the first trace. */
  FILE *trace;
  /* Writes "file:line" of the Python code that called the current
   * operator, for the trace; may be NULL. */
  int (*where)(char *buf, size_t len);
} trw__bridge_options;

int trw__bridge_begin(const trw_env *env, const trw__bridge_options *opts, char *err,
                      size_t errlen);

/* Takes the key out of the thread's included set.  Never fails. */
void trw__bridge_end(void);

/*
 * The torch.export path (runtime/hooks.c), per thread and nesting.
 * capture: while torch.export records the model (at PreDispatch, above
 * torchrw's key, so kernels there would rewrite only what is not
 * recorded), the key is excluded.  lower: while an ExportedProgram is
 * retraced to ATen (run_decompositions, at the Python key, below
 * torchrw's), every call of a rewritten operator is rewritten, as the
 * tracer's are.
 */
void trw__bridge_capture(int on);
void trw__bridge_lower(int on);

/* The number of operator kernels installed (for tests and the report). */
size_t trw__bridge_kernel_count(void);

#ifdef __cplusplus
}
#endif

#endif
