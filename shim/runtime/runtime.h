/* runtime.h - activation and scope of rewriting.  Internal. */
#ifndef TRW_RUNTIME_H
#define TRW_RUNTIME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Starts rewriting for the outermost trace of this thread.  The first call
 * reads the environment (TORCHRW_BACKEND, _CONFIG, _PLUGINS, _PYTHON,
 * _DISABLE, _LOG), loads plugins and imports Python rewriter modules; a
 * problem found then is kept and returned by every later call, so that no
 * export goes ahead without the rewriters the user asked for.  Returns 0,
 * or a negative code with a message in err that names the variable, file,
 * module or rewriter at fault.
 */
int trw__activate(char *err, size_t errlen);

/* Reads the environment, loads plugins and Python rewriter modules (once),
 * without starting a trace: for listings.  Same returns as activate. */
int trw__runtime_prepare(char *err, size_t errlen);

/* Ends what trw__activate started: restore, report.  Never fails. */
void trw__deactivate(void);

/* The environment of the current (or last) trace. */
const trw_env *trw__runtime_env(void);

/*
 * Explicit mode (torchrw.RewriterContext): until pop, traces use backend,
 * the config (JSON text, or a file when cfg_is_path), ir ("onnx",
 * "torchscript" or NULL) and opset (0: the export's, else the config's)
 * instead of the environment.  backend NULL means the config's
 * backend_config.type.  Returns 0, or TRW_EBACKEND / TRW_ECONFIG / a load
 * error with err filled.
 */
int trw__runtime_push_mode(const char *backend, const char *cfg, int cfg_is_path,
                           const char *ir, int opset, char *err, size_t errlen);
void trw__runtime_pop_mode(void);

/* scope.cpp: the per-thread bracket around traces.  enter activates on
 * the outermost trace of the thread; returns 0 or an error code with err
 * filled.  depth is 0 outside traces. */
int trw__scope_enter(char *err, size_t errlen);
void trw__scope_leave(void);
int trw__scope_depth(void);

/* Loads what the first activation loads (plugins, TORCHRW_PYTHON), once;
 * the Python entry points call it before the trace, so that Ctrl-C while
 * the modules import reaches the caller as KeyboardInterrupt (still set
 * when this returns TRW_EPYTHON with err filled).  0 otherwise: what
 * failed to load is reported at activation. */
int trw__runtime_load(char *err, size_t errlen);

/* The end of a torch.onnx.export call (the hook entered it with
 * trw__export_enter): the Python rewriters its traces held are given back,
 * and the report's record closes. */
void trw__runtime_export_leave(void);

/* The IR, opset and exporter of the activation this thread is about to
 * start (a hook of torch.export's path knows them; without this,
 * activation asks torch.onnx's TorchScript exporter).  Used once. */
void trw__runtime_expect(trw_ir ir, int opset, trw_exporter exporter);

/* hooks.c: the Python entry points torchrw brackets (the adapter's
 * lists).  Who installed them: the preloaded shim for the process, or a
 * RewriterContext for its block; each removes only its own.  install
 * hooks what is imported and waits for the rest (torch.onnx is imported
 * late); 0, or -1 with an exception set.  Take the GIL. */
typedef enum trw__hooks_owner { TRW__HOOKS_PROCESS = 0, TRW__HOOKS_CONTEXT = 1 } trw__hooks_owner;
int trw__hooks_install(trw__hooks_owner owner, int with_trace);
void trw__hooks_remove(trw__hooks_owner owner);

/* exportinfo.c: the IR and opset of the export under way (0 when not an
 * ONNX export).  Returns 0, or TRW_EPYTHON when Python cannot tell. */
int trw__runtime_export_info(trw_ir *ir, int *opset);

/* exportinfo.c: checks that the torch in the process (torch.__version__) is the
 * one this runtime was built for.  0, or TRW_ENOTORCH with err filled. */
int trw__runtime_check_torch(char *err, size_t errlen);

/* The operator trace (TORCHRW_TRACE=1 for stderr, or a file), or NULL
 * when it is off.  Opened on first use. */
FILE *trw__trace_stream(void);

#ifdef __cplusplus
}
#endif

#endif
