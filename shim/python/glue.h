/*
 * glue.h - the torchrw Python module and the Python side of rewriting.
 * Internal to the runtime.  Every function here expects the GIL held.
 *
 *   module.c    PyInit_torchrw, the three registries, IR, checkers
 *   context.c   Context objects, the per-thread context stack, Config
 *   lazy.c      resolving targets without importing; waiting for modules
 *   patch.c     function rewriters: patching dotted paths and aliases
 *   modpatch.c  module rewriters: wrapping instances of nn.Module classes
 *   symbolic.c  symbolic rewriters: torch.onnx registrations, Function.symbolic
 *   apply.c     what activation asks of Python: rewriter modules, begin/end
 *   where.c     the Python line that called an operator
 *   pymodule.cpp  C module rewriters: Python arguments as trw_values
 *
 * The glue sits on the core and the torch bridge; the runtime (above it)
 * adds RewriterContext to the module through trw__py_add_module_part.
 */
#ifndef TRW_GLUE_H
#define TRW_GLUE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../core/core.h"
#include "builtin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* module.c                                                                  */

/* A part of the module that a layer above the glue adds (the runtime's
 * RewriterContext and listings): queued from a constructor, called with
 * the new module; 0 or -1 with an exception set. */
typedef int (*trw__py_module_part)(PyObject *module);
void trw__py_add_module_part(trw__py_module_part part);

/* The torchrw module, created on first use and kept in sys.modules so that
 * `import torchrw` finds the same one.  New reference, or NULL with an
 * exception set. */
PyObject *trw__py_module(void);

/* A Python rewriter's payload, stored as the registry entry's fn: a tuple
 * (callable, kwargs dict or None, checkers tuple, is_pytorch, descriptors). */
enum {
  TRW__PY_FN = 0,
  TRW__PY_KWARGS = 1,
  TRW__PY_CHECKERS = 2,
  TRW__PY_IS_PYTORCH = 3,
  TRW__PY_DESCRIPTORS = 4,
  TRW__PY_NFIELDS = 5
};

/* tp_descr_get for torchrw's callables that stand in for functions: bound
 * to the instance like a function, so that a replaced method gets self. */
PyObject *trw__py_bind_method(PyObject *self, PyObject *obj, PyObject *type);

/* tp_getattro helper for the same callables: their own attributes, then
 * __wrapped__ (the original) and the original's (__name__, __module__,
 * __doc__ ...), as functools.wraps would give, since torch and inspect
 * read them.  original may be NULL. */
PyObject *trw__py_stand_in_getattr(PyObject *self, PyObject *name, PyObject *original);

/* tp_descr_get for a patch of a class attribute whose original is origin:
 * on a thread that traces, the patch (bound like trw__py_bind_method); on
 * any other, what origin gives, so that Cls.method and obj.method are the
 * original's own function or bound method there. */
PyObject *trw__py_patch_bind(PyObject *self, PyObject *obj, PyObject *type, PyObject *origin);

/* tp_getattro of a patch whose original is origin: trw__py_stand_in_getattr,
 * and on a thread that does not trace, __class__ is the original's class
 * (isinstance, inspect.isfunction). */
PyObject *trw__py_patch_getattr(PyObject *self, PyObject *name, PyObject *origin);

/* __reduce_ex__ of a stand-in for original: pickles as the original does
 * (a function: by its name).  New reference, or NULL with an exception. */
PyObject *trw__py_stand_in_reduce(PyObject *original, PyObject *proto);

/* ------------------------------------------------------------------------ */
/* ------------------------------------------------------------------------ */
/* errors.c                                                                  */

/* After rewriter r's Python code raised: an Exception becomes
 * torchrw.RewriterError (a RuntimeError) naming r's stable name and
 * registration site, with the original as its __cause__ (and traceback);
 * one raised by a rewriter further in, and what is not an Exception
 * (KeyboardInterrupt, SystemExit), pass unchanged.  Returns NULL. */
PyObject *trw__py_rewriter_failed(const trw__rewriter *r);

/* Adds torchrw.RewriterError to the module m: 0, or -1 with an
 * exception. */
int trw__py_add_rewriter_error(PyObject *m);

/* The current exception as one string, with its traceback when it has
 * one; clears it.  Writes into buf. */
void trw__py_describe_error(char *buf, size_t len, int with_traceback);

/* ------------------------------------------------------------------------ */
/* context.c                                                                 */

/* A Context object for rewriter r in env, with origin (borrowed, may be
 * NULL).  New reference. */
PyObject *trw__py_context_new(trw__rewriter *r, const trw_env *env,
                              PyObject *origin);
/* Pushes ctx on this thread's context stack; -1 with RecursionError set
 * when the stack is full. */
int trw__py_context_push(PyObject *ctx);
void trw__py_context_pop(void);
/* Whether the innermost running rewriter called trw__py_context_passed
 * (builtin.h). */
int trw__py_context_top_passed(void);

/* The deployment config as a torchrw.Config (dict with attribute access);
 * an empty one for NULL.  New reference. */
PyObject *trw__py_config(const trw_cfg *cfg);

/* Counts a call of rewriter r (the report). */
static inline void trw__py_hit(trw__rewriter *r)
{
  __atomic_add_fetch(&r->hits, 1, __ATOMIC_RELAXED);
  trw__status_fired();
}

/* ------------------------------------------------------------------------ */
/* patch.c, modpatch.c, symbolic.c                                           */

/*
 * lazy.c: resolving a dotted path without importing anything.
 * trw__py_resolve: 0 when *owner (new ref) holds attribute *attr (a
 * pointer into name); 1 when a module on the path is not imported yet;
 * -1 when the path does not exist.  why says why for 1 and -1; no
 * exception is left set.
 * trw__py_target resolves rewriter r's name the same way and reports -1
 * as not found (info level and the report); trw__py_target_class also
 * requires a class (*cls, new reference) and reports what otherwise.
 */
int trw__py_resolve(const char *name, PyObject **owner, const char **attr,
                    char *why, size_t whylen);
int trw__py_target(trw__rewriter *r, PyObject **owner, const char **attr);
int trw__py_target_class(trw__rewriter *r, const char *what, PyObject **cls);

/* How long a deferred target waits for its module: the trace (function
 * and module patches), the export (symbolics), or the process (entry
 * points torchrw brackets). */
typedef enum trw__py_until {
  TRW__PY_UNTIL_TRACE,
  TRW__PY_UNTIL_SYMBOLICS,
  TRW__PY_UNTIL_CONTEXT, /* a RewriterContext's block */
  TRW__PY_UNTIL_PROCESS
} trw__py_until;
/* Applies what waited once its module is imported: 0 applied (or
 * reported not found), 1 still waiting, -1 with an exception set. */
typedef int (*trw__py_apply_fn)(void *arg, const trw_env *env);
/* Defers apply(arg, env) until a module on the dotted path is imported
 * (then it runs, from the import).  stable names what is reported as not
 * found when the wait ends (NULL: nothing is).  path and stable are
 * copied.  0, or -1 with an exception set. */
int trw__py_defer(const char *path, const char *stable, trw__py_apply_fn apply, void *arg,
                  const trw_env *env, trw__py_until until);
/* Ends the wait of everything deferred until `until`: what never came is
 * reported as not found. */
void trw__py_drop_deferred(trw__py_until until);
/* The same without reporting anything (a fork child's parent reports). */
void trw__py_forget_deferred(trw__py_until until);

/* journal.c: what torchrw changed on Python objects, one journal per
 * lifetime, undone newest first. */
typedef enum {
  TRW__PY_UNDO_ATTR, /* owner.key = old, or del owner.key when old is NULL */
  TRW__PY_UNDO_ITEM, /* owner[key] = old, or del owner[key] */
  TRW__PY_UNDO_CALL  /* owner.key(*old): old a tuple */
} trw__py_undo;

/* Records a change (old: the value before, NULL when there was none; the
 * arguments for a call) in the journal of until.  0, or -1 with an
 * exception set. */
int trw__py_journal_add(trw__py_until until, trw__py_undo how, PyObject *owner, PyObject *key,
                        PyObject *old);
/* Forgets the last record of until (its change could not be made). */
void trw__py_journal_drop_last(trw__py_until until);
/* Undoes every change recorded for until, newest first; keeps a pending
 * exception. */
void trw__py_journal_unwind(trw__py_until until);

/* Sets owner.attr = value and logs what the owner had (its own value, not
 * an inherited one) for trw__py_unpatch_functions.  0, or -1 with an
 * exception set. */
int trw__py_setattr_logged(PyObject *owner, PyObject *attr, PyObject *value);

/* Patches every selected Python function rewriter for env.  Returns 0, or
 * -1 with an exception set (what was patched so far is restored). */
int trw__py_patch_functions(const trw_env *env);
/* The Context patched for target or stable name in this activation
 * (borrowed), or NULL: get_context(name) outside that rewriter's call. */
PyObject *trw__py_patched_context(const char *name);
/* Restores everything trw__py_setattr_logged and the function patches
 * changed, newest first.  Keeps a pending exception. */
void trw__py_unpatch_functions(void);

int trw__py_patch_modules(const trw_env *env);
/* Runs C module rewriter rw for module(*args) (pymodule.cpp): the result,
 * or NULL with RuntimeError naming the rewriter. */
PyObject *trw__py_module_call_c(trw__rewriter *rw, const trw_env *env, PyObject *module,
                                PyObject *forward, PyObject *const *args, Py_ssize_t nargs);
void trw__py_unpatch_modules(void);

/* Registers the selected symbolic rewriters (Python and C) with torch.onnx
 * and custom Functions for env, replacing any earlier installation.
 * Returns 0, or -1 with an exception set. */
int trw__py_install_symbolics(const trw_env *env);
/* Gives torch its own symbolics back. */
void trw__py_uninstall_symbolics(void);
/* The adapter's embedded Python module torchrw._<stem> (shim/adapter/
 * <stem>.py), run on first use: borrowed, or NULL with an exception set. */
PyObject *trw__py_embedded(const char *stem);

/* For torch.onnx's exporter on torch.export: a custom_translation_table
 * ({OpOverload: translation}) making each selected symbolic rewriter of a
 * torch operator (or autograd Function) the translation of its overloads
 * for env.  Their nodes are built for opset, the one the exporter builds
 * the graph at (it converts to env's afterwards), which is also what
 * their context says.  New reference, or NULL with an exception set. */
PyObject *trw__py_translation_table(const trw_env *env, int opset);
/* The export those translations served has ended: forget its calls.
 * Keeps a pending exception. */
void trw__py_translation_done(void);

/* Setup: each file of the glue readies its own types and adds what it
 * shows to the torchrw module, called once each from module.c's one flat
 * list (no file readies another's).  0, or -1 with an exception set. */
int trw__py_context_ready(PyObject *module);
int trw__py_patch_ready(PyObject *module);
int trw__py_modpatch_ready(PyObject *module);
int trw__py_lazy_ready(PyObject *module);
int trw__py_symbolic_ready(PyObject *module);
int trw__py_csymbolic_ready(PyObject *module);

/* How symbolic.c calls a C symbolic rewriter (csymbolic.c sets it). */
typedef PyObject *(*trw__py_symbolic_c_fn)(trw__rewriter *rw, PyObject *ctx,
                                            const trw_env *env, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames);
extern trw__py_symbolic_c_fn trw__py_symbolic_c_call;

/* ------------------------------------------------------------------------ */
/* Built-in rewriters of Python functions (builtin.h has their macro) */

/* Registers the queued built-ins; 0, or -1 with an exception set. */
int trw__py_register_builtins(PyObject *module);

/* ------------------------------------------------------------------------ */
/* apply.c: what activation asks of Python                                   */

/* Imports TORCHRW_PYTHON's modules (a comma-separated list of modules or
 * .py files; NULL creates the torchrw module only); the first failure's
 * traceback in err.  An interrupt (an exception that is not an Exception:
 * KeyboardInterrupt, SystemExit) stops the import and stays raised, with
 * *interrupted set (when interrupted is not NULL; otherwise it is a
 * failure like others).  Takes the GIL. */
int trw__py_import_modules(const char *list, char *err, size_t errlen, int *interrupted);
/* Applies the Python rewriters (and, if asked, registers the symbolic
 * rewriters with torch.onnx) for a trace; trw__py_end gives everything
 * back.  Take the GIL. */
int trw__py_begin(const trw_env *env, int install_symbolics, char *err, size_t errlen);
void trw__py_end(void);

/* where.c: "file:line" of the Python code that called the current
 * operator (the innermost frame outside torch).  Takes the GIL. */
int trw__py_where(char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
