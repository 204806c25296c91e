/*
 * builtin.h - what a built-in rewriter of a Python function sees of the
 * glue, and no more: its registration macro, its context and the error
 * helper.  The built-ins (rewriters/ncnn_python.c, attention_ncnn.c) are
 * written in C against the CPython API, because torch calls some
 * functions, Tensor.size among them, without the dispatcher while tracing.
 * Expects the GIL held.
 */
#ifndef TRW_PY_BUILTIN_H
#define TRW_PY_BUILTIN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../core/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A built-in's signature: METH_FASTCALL | METH_KEYWORDS, called in place
 * of the Python function it rewrites. */
typedef PyObject *(*trw__py_builtin_fn)(PyObject *self, PyObject *const *args,
                                        Py_ssize_t nargs, PyObject *kwnames);

typedef struct trw__py_builtin {
  const char *name, *backend;
  PyCFunction fn; /* a trw__py_builtin_fn */
  const char *file;
  int line;
  struct trw__py_builtin *next;
} trw__py_builtin;

/* Queues b; the torchrw module registers the queue when it is created,
 * before plugins and user modules, so that they can replace a built-in. */
void trw__py_queue_builtin(trw__py_builtin *b);

/* TRW__PY_BUILTIN("torch.Tensor.size", "ncnn", size_static): registers fn
 * when the library loads.  Like the public macros of include/torchrw.h it
 * refuses, at compile time, a fn that is not a trw__py_builtin_fn. */
#define TRW__PY_BUILTIN(name_, backend_, fn_)                                   \
  __attribute__((constructor)) static void TRW__CAT(trw__pyreg_, __LINE__)(void) \
  {                                                                            \
    static trw__py_builtin b = {                                               \
        name_, backend_,                                                       \
        (PyCFunction)(void (*)(void))TRW__TYPED(trw__py_builtin_fn, fn_),      \
        __FILE__, __LINE__, NULL};                                             \
    trw__py_queue_builtin(&b);                                                 \
  }                                                                            \
  struct trw__swallow_semicolon

/* Innermost context, or the innermost whose rewriter targets name (NULL
 * for any).  Borrowed; NULL when there is none. */
PyObject *trw__py_context_top(const char *name);

/* Marks the innermost running rewriter as having left its call to the
 * original unchanged: the report does not count it as fired (as a C
 * operator rewriter that only ran the original is not counted). */
void trw__py_context_passed(void);

/* Raises RuntimeError("torchrw: <message>"); returns NULL. */
PyObject *trw__py_raise(const char *fmt, ...) TRW_PRINTF(1, 2);

#ifdef __cplusplus
}
#endif

#endif
