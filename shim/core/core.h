/*
 * core.h - torchrw's core: registry, selection, context, config, log,
 * report.  Pure C: no torch, no Python.  Internal to the runtime; rewriter
 * authors use include/torchrw.h.
 */
#ifndef TRW_CORE_H
#define TRW_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "torchrw.h"
#include "backends.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TRW__HIDDEN __attribute__((visibility("hidden")))

/* ------------------------------------------------------------------------ */
/* Log                                                                       */

typedef enum trw__level {
  TRW__LOG_ERROR = 0,
  TRW__LOG_WARN = 1,
  TRW__LOG_INFO = 2,
  TRW__LOG_DEBUG = 3
} trw__level;

/* Reads TORCHRW_LOG ("error", "warn", "info", "debug"); an unknown value
 * keeps "warn" and logs one warning naming it. */
void trw__log_init(void);
void trw__log_set_level(trw__level level);
trw__level trw__log_level(void);
int trw__log_enabled(trw__level level);
/* Prints "torchrw: [level: ]message\n" on stderr when level is enabled. */
void trw__log(trw__level level, const char *fmt, ...) TRW_PRINTF(2, 3);
void trw__vlog(trw__level level, const char *fmt, va_list ap);
/* The info line of a rewriter that hands a call to the original:
 * "<name> (<file>:<line>) leaves <op> to <original>: <why>". */
void trw__log_declined(trw_ctx *ctx, const char *original, const char *fmt, va_list ap);

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

/* snprintf that always terminates and never fails; returns buf. */
char *trw__fmt(char *buf, size_t len, const char *fmt, ...) TRW_PRINTF(3, 4);
char *trw__strdup(const char *s); /* NULL on NULL or ENOMEM */

/* ------------------------------------------------------------------------ */
/* Backends and names                                                        */

/* "default" (TRW_IR_ANY), "onnx", "torchscript": the one spelling of the
 * IRs (mmdeploy's IR values), in the Python API, listings and reports. */
const char *trw__ir_name(trw_ir ir);
/* The IR a name spells (NULL and "" mean "default"): 0, or TRW_EINVAL for
 * any other name. */
int trw__ir_parse(const char *name, trw_ir *ir);

/* Index of a known backend spelling, or -1.  NULL and "" mean "default". */
int trw__backend_index(const char *backend);
/* Whether backend's engine reads an ONNX file whose weights are stored
 * outside it (ONNX external data); 0 for ncnn (pnnx cannot). */
int trw__backend_reads_external_data(const char *backend);
/* The canonical spelling of backend ("default" for NULL), or NULL. */
const char *trw__backend_canonical(const char *backend);

/*
 * The aten operator a function rewriter name targets, written into op:
 * "aten::repeat" for "torch.Tensor.repeat", "torch.repeat",
 * "torch.nn.functional.repeat" and "aten::repeat"; "aten::squeeze.dim" for
 * "aten::squeeze.dim".  Returns 0, 1 when the name is a valid dotted Python
 * path that is not an operator (a Python function), or TRW_ENAME.
 */
int trw__name_to_op(const char *name, char *op, size_t oplen);
/* Nonzero when name is a plausible rewriter name (no spaces, not empty). */
int trw__name_valid(const char *name);

/* ------------------------------------------------------------------------ */
/* Registry                                                                  */

typedef enum trw__lang { TRW__LANG_C = 0, TRW__LANG_PYTHON = 1 } trw__lang;

typedef struct trw__rewriter {
  trw_kind kind;
  trw__lang lang;
  char *name;    /* as registered */
  char *backend; /* canonical: "default", "tensorrt", ... */
  char *versions; /* the backend versions it is for ("<8.6"), NULL: all */
  trw_ir ir;
  trw_checker_fn checkers[4];
  void *fn; /* C: the trw_*_fn; Python: a PyObject * (owned via release) */
  void (*release)(void *fn); /* called when the entry is replaced */
  /* Checkers in another language (Python); 0 means "does not apply". */
  int (*check_extra)(const struct trw__rewriter *r, const trw_env *env);
  /* Identity of those checkers, part of the key (0 for none). */
  uintptr_t extra_key;
  char *file;
  int line;
  char *op;      /* C function rewriters of an operator: "aten::repeat" */
  char *checker_names; /* C checkers as written at registration, or NULL */
  char *stable;  /* "torch.Tensor.repeat@tensorrt"; built-ins: "builtin:..." */
  int builtin;   /* torchrw's own (rewriters/, symbolic/): yields to users' */
  uint64_t seq;  /* registration order */
  void *user_data;
  void (*free_user_data)(void *);
  int disabled;  /* named in TORCHRW_DISABLE */
  uint64_t hits; /* calls in the current trace */
  uint64_t total_hits;
} trw__rewriter;

/* A TRW_FIXES declaration (fixes.c); the strings are the declarer's. */
typedef struct trw__fix {
  const char *name, *backend, *op, *rule, *file;
  const char *versions; /* the declaration's version constraint, or NULL */
  int line;
} trw__fix;

/* How many TRW_FIXES declarations were recorded, and the i-th (copied into
 * out; 0, or TRW_ERANGE past the end). */
size_t trw__fixes_count(void);
int trw__fixes_get(size_t i, trw__fix *out);

/* The environment selection looks at (the public trw_env). */
struct trw_env {
  const char *backend; /* canonical */
  trw_ir ir;
  int opset;
  trw_exporter exporter;
  int torch_major, torch_minor;
  const trw_cfg *cfg;
  /* The engine version (a known one of backend's: "8.5"); NULL means the
   * newest torchrw has a table of (trw__env_version). */
  const char *version;
};

/* env's backend version: env->version, else the backend's newest, else
 * "" for a backend without versions. */
const char *trw__env_version(const trw_env *env);

/* How a registration came: TRW__REG_BUILTIN for torchrw's own rewriters,
 * which a user's of the same kind, name and backend outranks. */
enum { TRW__REG_BUILTIN = 1 };

/* Registers a rewriter (see trw_register); lang, release, check_extra and
 * extra_key (the identity of those checkers, 0 for none) are for the
 * Python glue.  The key is (kind, name, backend, IR, checkers, built-in or
 * not): rewriters of one name that differ in their checkers live side by
 * side.  On failure err says why (site named); release is then not called:
 * the caller keeps what it passed. */
int trw__register(const trw_rewriter_def *def, trw__lang lang, unsigned flags,
                  void (*release)(void *),
                  int (*check_extra)(const struct trw__rewriter *,
                                     const trw_env *),
                  uintptr_t extra_key, char *err, size_t errlen);
/* trw_register for the built-in rewriters compiled into the runtime
 * (TRW__REGISTER_FN, set by the build for rewriters/ and symbolic/). */
int trw__register_builtin(const trw_rewriter_def *def);

/* How strongly r claims its target: a backend's rewriter over a default
 * one, then a user's over a built-in, then one for an IR over one for
 * any, then one with checkers over one without.  Among equals the later
 * registration wins.  Selection and homonyms (two paths to one function)
 * both decide by it. */
int trw__rank(const trw__rewriter *r);

/* Number of registrations refused so far and the messages, for activation
 * to report: constructors cannot see their own return value. */
size_t trw__registry_error_count(void);
const char *trw__registry_error(size_t i);
/* Forget refusals (for tests and after they were reported). */
void trw__registry_clear_errors(void);

/* Bumped by every successful registration and by trw__registry_disable. */
uint64_t trw__registry_generation(void);

/* Enumeration in registration order; the pointers stay valid until the
 * entry is replaced.  Returns the number of entries. */
size_t trw__registry_count(void);
trw__rewriter *trw__registry_at(size_t i);

/*
 * The rewriter of kind/name that applies in env: one whose backend is
 * env->backend, whose IR matches and whose checkers all pass; else the
 * default one under the same rules; else NULL.  Among those that apply, an
 * IR-specific one beats an IR_ANY one, then one with checkers beats one
 * without, then the later registration wins.  Disabled rewriters are never
 * selected.
 */
trw__rewriter *trw__select(trw_kind kind, const char *name,
                           const trw_env *env);

/* plan.c: the winner of each name of kind under env (what trw__select
 * picks), every one at once, in registration order; *n of them.  Worked
 * out the first time env asks and kept until the registry changes, so the
 * array stays valid through an export (registration is refused during
 * one).  NULL with *n 0 when out of memory (logged). */
trw__rewriter *const *trw__plan_winners(const trw_env *env, trw_kind kind, size_t *n);
/* Whether env's plan has r as the winner of its name. */
int trw__plan_selects(const trw_env *env, const trw__rewriter *r);
/* Frees every plan (tests; trw__registry_reset makes them stale anyway). */
void trw__plan_reset(void);

/* Applies a TORCHRW_DISABLE list ("a@tensorrt,b"): a bare name disables the
 * name for every backend.  The list also holds for later registrations. */
void trw__registry_disable(const char *list);
/* Logs one warning per TORCHRW_DISABLE name that matches no rewriter. */
void trw__registry_warn_unmatched_disables(void);

/* Removes every registration (tests only). */
void trw__registry_reset(void);

/* Phase: registration is refused while > 0. */
void trw__registry_set_active(int active);

/* ------------------------------------------------------------------------ */
/* Config                                                                    */

/* Parses JSON text.  origin names the source in messages.  On failure
 * returns TRW_ECONFIG with "origin:line:column: reason" in err. */
int trw__cfg_parse(const char *buf, size_t len, const char *origin,
                   trw_cfg **out, char *err, size_t errlen);
/* Reads and parses a file; TRW_EIO when it cannot be read (err names it). */
int trw__cfg_load(const char *path, trw_cfg **out, char *err, size_t errlen);
void trw__cfg_free(trw_cfg *cfg);
/* A number no other config parsed in this process has (0 for NULL): tells
 * a new config from an old one at the same address. */
uint64_t trw__cfg_serial(const trw_cfg *cfg);
/* The JSON value at path (a json_t *), or NULL; for the Python glue. */
void *trw__cfg_lookup(const trw_cfg *cfg, const char *path);
void *trw__cfg_root(const trw_cfg *cfg);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */

/* One rewriter call.  frame belongs to the torch bridge. */
struct trw_ctx {
  trw__rewriter *rw;
  const trw_env *env;
  const char *op; /* "aten::repeat", for operator rewriters */
  void *frame;
  int err_code;
  char err[1024];
};

/* How deep this thread is in traces (0: not tracing).  The runtime's
 * scope enters and leaves; Python patches rewrite only on a thread that is
 * tracing. */
int trw__tracing_depth(void);
void trw__tracing_enter(void);
void trw__tracing_leave(void);
/* torch.onnx.export calls on this thread (the runtime's hook counts them):
 * a trace inside one keeps its Python rewriters in place, held, until the
 * export returns, for what torch.onnx calls after the trace (padding and
 * RNN helpers of its symbolics).  leave returns the depth left. */
void trw__export_enter(void);
int trw__export_leave(void);
int trw__export_depth(void);
/* Threads of the process inside such a call. */
int trw__exporting_threads(void);
/* Traces of this thread whose Python rewriters are held: hold adds one,
 * release returns how many and forgets them. */
void trw__hold_python(void);
int trw__release_python(void);
/* Python rewriters act on this thread: it traces, or its export holds them. */
int trw__rewriting_here(void);
/* A fork child starts outside every trace: the forking thread's depths and
 * holds, and the registry's phase, are reset in the child (pthread_atfork;
 * nothing to call). */

/* The message to raise when a rewriter failed with code. */
void trw__ctx_failure(const trw_ctx *ctx, int code, char *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Output files (output.c)                                                   */

/* The files torchrw writes when asked: TORCHRW_REPORT, TORCHRW_TRACE
 * ("1" or "stderr" there mean stderr). */
typedef enum trw__output_id { TRW__OUT_REPORT = 0, TRW__OUT_TRACE = 1 } trw__output_id;

/* Nonzero when the output's variable asks for it and it was not refused. */
int trw__output_wanted(trw__output_id id);
/*
 * Opens the output once per process (a fork child reopens) for appending,
 * without replacing what is there, following no symlink it creates, never
 * blocking.  A missing directory, a directory, a read-only file, a FIFO
 * without reader, a block device or a socket is logged once as an error
 * naming the variable, and the output stays off.  Returns 0, or TRW_EIO
 * when it is off (also when not asked for).
 */
int trw__output_open(trw__output_id id);
/* Appends buf whole (under an exclusive flock, so records of processes
 * that share the file never interleave).  0, or TRW_EIO (logged once;
 * the output is then off). */
int trw__output_write(trw__output_id id, const char *buf, size_t len);
/* A line-buffered stream over the output (stderr for "1"), or NULL when
 * off.  Owned by output.c: do not close it. */
FILE *trw__output_stream(trw__output_id id);
/* The process is about to write target (whose: "the export's output
 * file"): every output that is that file, or would be once created, is
 * turned off with one error.  Outputs not opened yet are checked by the
 * path their variable names. */
void trw__output_guard(const char *target, const char *whose);
/* Closes the outputs and forgets refusals (tests). */
void trw__output_reset(void);

/* ------------------------------------------------------------------------ */
/* Report                                                                    */

/* Starts a trace's report (the trace's IR and opset).  The record stays
 * open after the trace for the symbolics that run then, until the next
 * trw__report_begin or trw__report_flush.  Without TORCHRW_REPORT no
 * record is kept: the report costs memory only when asked for. */
void trw__report_begin(const trw_env *env);
/* Notes a name that a rewriter targets but that does not exist. */
void trw__report_not_found(const char *stable, const char *why);
/*
 * Closes the open record: one info line per rewriter that fired, and with
 * TORCHRW_REPORT one line of JSON appended to that file (JSON Lines: a
 * record per trace, from every process that exports; see output.c).
 * Resets the hit counters.  Called when an export or a trace outside one
 * ends, at the next trace, at the end of a RewriterContext block and when
 * the process exits.  A record a fork child inherits is the parent's: the
 * child drops it.
 */
void trw__report_flush(void);
/* Frees what the report holds (tests). */
void trw__report_reset(void);

/* ------------------------------------------------------------------------ */
/* Status (status.c)                                                         */

/* Nonzero when TORCHRW_STATUS_FD names torchrw run's status socket (read
 * once; the descriptor is then marked close-on-exec).  Everything below
 * does nothing otherwise.  Thread-safe; never fails, never blocks. */
int trw__status_on(void);
/* The export entered phase p (a trw__phase, status_wire.h): sent
 * at once when it changed. */
void trw__status_phase(int p);
int trw__status_get_phase(void);
/* One operator traced; one rewrite fired.  Sent at most every 100 ms. */
void trw__status_op(void);
void trw__status_fired(void);

#ifdef __cplusplus
}
#endif

#endif /* TRW_CORE_H */
