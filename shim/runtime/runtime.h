/* runtime.h - activation and scope of rewriting.  Internal. */
#ifndef TRW_RUNTIME_H
#define TRW_RUNTIME_H

#include <stddef.h>

#include "../core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Starts rewriting for the outermost trace of this thread.  The first call
 * reads the environment (TORCHRW_BACKEND, _CONFIG, _PLUGINS, _DISABLE,
 * _LOG) and loads plugins; a problem found then is kept and returned by
 * every later call, so that no export goes ahead without the rewriters the
 * user asked for.  Returns 0, or a negative code with a one-line message
 * in err that names the variable, file or rewriter at fault.
 */
int trw__activate(char *err, size_t errlen);

/* Ends what trw__activate started: report, restore.  Never fails. */
void trw__deactivate(void);

/* The environment of the current (or last) trace. */
const trw_env *trw__runtime_env(void);

/* Python glue: the IR and opset of the export under way (0 when not an
 * ONNX export).  Returns 0, or TRW_EPYTHON when Python cannot tell. */
int trw__py_export_info(trw_ir *ir, int *opset);

#ifdef __cplusplus
}
#endif

#endif
