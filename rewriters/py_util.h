/*
 * py_util.h - small helpers shared by the built-in rewriters of Python
 * functions (written in C against the CPython API, registered with
 * TRW__PY_BUILTIN, shim/python/builtin.h: the only part of the glue they
 * see).
 *
 * Everything here is static inline, as in rw_util.h for the operator
 * rewriters.  The functions run with the GIL held, inside the rewriter's
 * context (the python glue pushes it before calling the rewriter).
 */
#ifndef TORCHRW_PY_UTIL_H
#define TORCHRW_PY_UTIL_H

#include <math.h>
#include <string.h>

#include "../shim/python/builtin.h"

/* The running built-in's origin_func: new reference, or NULL with an
 * exception set when called outside a rewriter's context. */
static inline PyObject *origin_of_context(void)
{
  PyObject *ctx = trw__py_context_top(NULL);
  if (!ctx)
    return trw__py_raise("built-in rewriter called outside its context");
  return PyObject_GetAttrString(ctx, "origin_func");
}

/* Whether the running built-in's export is torch.export's (its context's
 * exporter, "torchscript" or "torch.export").  Keeps no exception. */
static inline int under_torch_export(void)
{
  PyObject *ctx = trw__py_context_top(NULL);
  PyObject *e = ctx ? PyObject_GetAttrString(ctx, "exporter") : NULL;
  int r = e && PyUnicode_Check(e) && PyUnicode_CompareWithASCIIString(e, "torch.export") == 0;
  Py_XDECREF(e);
  PyErr_Clear();
  return r;
}

/* Says at info level why the running built-in leaves a call to the
 * original (the C rewriters' trw_decline).  Keeps no exception. */
static inline void decline_info(const char *why)
{
  if (!trw__log_enabled(TRW__LOG_INFO))
    return;
  PyObject *ctx = trw__py_context_top(NULL);
  PyObject *name = ctx ? PyObject_GetAttrString(ctx, "name") : NULL;
  PyObject *file = ctx ? PyObject_GetAttrString(ctx, "file") : NULL;
  PyObject *line = ctx ? PyObject_GetAttrString(ctx, "line") : NULL;
  PyObject *target = ctx ? PyObject_GetAttrString(ctx, "target") : NULL;
  const char *n = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : "?";
  const char *f = file && PyUnicode_Check(file) ? PyUnicode_AsUTF8(file) : "?";
  const char *t = target && PyUnicode_Check(target) ? PyUnicode_AsUTF8(target) : "the call";
  trw__log(TRW__LOG_INFO, "%s (%s:%ld) leaves %s to the original: %s", n, f,
           line && PyLong_Check(line) ? PyLong_AsLong(line) : 0L, t, why);
  Py_XDECREF(name);
  Py_XDECREF(file);
  Py_XDECREF(line);
  Py_XDECREF(target);
  PyErr_Clear();
}

/* Binds a vectorcall's arguments to the n parameter names of a Python
 * signature, as Python does: positional arguments first, then keywords by
 * name.  v[i] is the argument of names[i] (borrowed) or NULL when not
 * given.  Returns 0, or -1 with no exception set where Python would raise
 * TypeError (more positional arguments than parameters, a keyword that is
 * no parameter or names one already given): the caller leaves such a call
 * to the original, which raises the error Python would. */
static inline int bind_args(const char *const *names, int n, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames, PyObject **v)
{
  if (nargs > n)
    return -1;
  for (int i = 0; i < n; i++)
    v[i] = i < nargs ? args[i] : NULL;
  Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; k++) {
    const char *key = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
    int j = 0;
    while (key && j < n && strcmp(key, names[j]) != 0)
      j++;
    if (!key || j == n || v[j]) {
      PyErr_Clear();
      return -1;
    }
    v[j] = args[nargs + k];
  }
  return 0;
}

/* callable(*args, **kwargs) (kwargs may be NULL) with torch's TorchScript
 * tracer looking away: what it makes is no traced value, and the trace
 * records a tensor it makes as a constant where it is used.  Outside a
 * trace (torch.export's capture) a plain call.  New reference, or NULL
 * with an exception set; a tracer that cannot be put back fails the call
 * (the trace would go on untraced). */
static inline PyObject *call_untraced(PyObject *callable, PyObject *args, PyObject *kwargs)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *c = torch ? PyObject_GetAttrString(torch, "_C") : NULL;
  PyObject *state = c ? PyObject_CallMethod(c, "_get_tracing_state", NULL) : NULL;
  PyObject *off = state && state != Py_None
                      ? PyObject_CallMethod(c, "_set_tracing_state", "O", Py_None)
                      : NULL;
  PyObject *r = NULL;
  if (state && (state == Py_None || off)) {
    r = PyObject_Call(callable, args, kwargs);
    if (state != Py_None) {
      PyObject *type, *value, *tb;
      PyErr_Fetch(&type, &value, &tb);
      PyObject *back = PyObject_CallMethod(c, "_set_tracing_state", "O", state);
      if (!back) {
        Py_CLEAR(r);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
      } else {
        Py_DECREF(back);
        PyErr_Restore(type, value, tb);
      }
    }
  }
  Py_XDECREF(off);
  Py_XDECREF(state);
  Py_XDECREF(c);
  Py_XDECREF(torch);
  return r;
}

/* Whether o is missing or None. */
static inline int is_none(PyObject *o)
{
  return !o || o == Py_None;
}

/* Says at info why the running built-in leaves its call to the original,
 * which it hands on unchanged: the report does not count the call as
 * fired. */
static inline void passed_through(const char *why)
{
  decline_info(why);
  trw__py_context_passed();
}

/* The original's result for a call the built-in leaves to it, after
 * saying why at info.  Steals origin. */
static inline PyObject *to_original(PyObject *origin, const char *why, PyObject *const *args,
                                    Py_ssize_t nargs, PyObject *kwnames)
{
  passed_through(why);
  PyObject *r = PyObject_Vectorcall(origin, args, (size_t)nargs, kwnames);
  Py_DECREF(origin);
  return r;
}

/* Whether origin, unwrapped as inspect.unwrap does (transformers wraps
 * functions in deprecate_kwarg), is a Python function with exactly the n
 * positional parameters names, in order, and no keyword-only ones.  A
 * library release that changes the signature gets the original. */
static inline int knows_signature(PyObject *origin, const char *const *names, int n)
{
  PyObject *f = Py_NewRef(origin);
  for (int depth = 0; depth < 8; depth++) {
    PyObject *inner = PyObject_GetAttrString(f, "__wrapped__");
    if (!inner) {
      PyErr_Clear();
      break;
    }
    Py_SETREF(f, inner);
  }
  PyObject *code = PyObject_GetAttrString(f, "__code__");
  PyObject *argc = code ? PyObject_GetAttrString(code, "co_argcount") : NULL;
  PyObject *kwonly = code ? PyObject_GetAttrString(code, "co_kwonlyargcount") : NULL;
  PyObject *vars = code ? PyObject_GetAttrString(code, "co_varnames") : NULL;
  int ok = argc && PyLong_Check(argc) && PyLong_AsLong(argc) == n && kwonly &&
           PyLong_Check(kwonly) && PyLong_AsLong(kwonly) == 0 && vars &&
           PyTuple_Check(vars) && PyTuple_GET_SIZE(vars) >= n;
  for (int i = 0; ok && i < n; i++) {
    PyObject *s = PyTuple_GET_ITEM(vars, i);
    const char *c = PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
    ok = c && strcmp(c, names[i]) == 0;
  }
  Py_XDECREF(vars);
  Py_XDECREF(kwonly);
  Py_XDECREF(argc);
  Py_XDECREF(code);
  Py_DECREF(f);
  PyErr_Clear();
  return ok;
}

/* Why a call cannot go to the rewrite as one of origin's n parameters
 * names, or NULL when it can: origin has that signature (knows_signature)
 * and the call binds to it (bind_args, which fills v).  A call it cannot
 * take goes to the original, which raises what Python would. */
static inline const char *unbound_call(PyObject *origin, const char *const *names, int n,
                                       PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames, PyObject **v)
{
  if (!knows_signature(origin, names, n))
    return "the original's signature is not the one this rewriter knows";
  if (bind_args(names, n, args, nargs, kwnames, v) < 0)
    return "arguments that do not bind to its signature (the original raises)";
  return NULL;
}

/* torch.tensor(data, dtype=like.dtype, device=like.device), made while
 * the tracer looks away: a constant of the graph under both exporters
 * (torch.export lifts a tensor made from Python data).  Steals data (NULL
 * passes through).  New reference, or NULL with an exception set. */
static inline PyObject *constant_of(PyObject *data, PyObject *like)
{
  if (!data)
    return NULL;
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *tensor = torch ? PyObject_GetAttrString(torch, "tensor") : NULL;
  PyObject *dtype = tensor ? PyObject_GetAttrString(like, "dtype") : NULL;
  PyObject *device = dtype ? PyObject_GetAttrString(like, "device") : NULL;
  PyObject *kw = device ? Py_BuildValue("{s:O,s:O}", "dtype", dtype, "device", device) : NULL;
  PyObject *a = kw ? PyTuple_Pack(1, data) : NULL;
  PyObject *t = a ? call_untraced(tensor, a, kw) : NULL;
  Py_XDECREF(a);
  Py_XDECREF(kw);
  Py_XDECREF(device);
  Py_XDECREF(dtype);
  Py_XDECREF(tensor);
  Py_XDECREF(torch);
  Py_DECREF(data);
  return t;
}

/* t.size(dim) as a C long, read with the tracer looking away (it answers
 * sizes with traced 0-dim tensors) through torch's own Tensor.size (the
 * attribute on torch.Tensor may be a torchrw size rewriter); -1 when it is
 * no plain int (a SymInt under torch.export) or on failure, with no
 * exception kept. */
static inline long untraced_size(PyObject *t, int dim)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *c = torch ? PyObject_GetAttrString(torch, "_C") : NULL;
  PyObject *base = NULL;
  if (c && !(base = PyObject_GetAttrString(c, "TensorBase"))) { /* torch 2.x */
    PyErr_Clear();
    base = PyObject_GetAttrString(c, "_TensorBase"); /* torch 1.13 */
  }
  PyObject *size = base ? PyObject_GetAttrString(base, "size") : NULL;
  PyObject *a = size ? Py_BuildValue("(Oi)", t, dim) : NULL;
  PyObject *r = a ? call_untraced(size, a, NULL) : NULL;
  long n = r && PyLong_Check(r) ? PyLong_AsLong(r) : -1;
  Py_XDECREF(r);
  Py_XDECREF(a);
  Py_XDECREF(size);
  Py_XDECREF(base);
  Py_XDECREF(c);
  Py_XDECREF(torch);
  PyErr_Clear();
  return n;
}

/* obj.name as a C long; -1 when it is missing or no int (a bool is no
 * int here), with no exception kept. */
static inline long long_attr(PyObject *obj, const char *name)
{
  PyObject *a = PyObject_GetAttrString(obj, name);
  long r = a && PyLong_Check(a) && !PyBool_Check(a) ? PyLong_AsLong(a) : -1;
  Py_XDECREF(a);
  PyErr_Clear();
  return r;
}

/* obj.name as a C double; NAN when it is missing or no number, with no
 * exception kept. */
static inline double float_attr(PyObject *obj, const char *name)
{
  PyObject *a = PyObject_GetAttrString(obj, name);
  double r = a && (PyFloat_Check(a) || PyLong_Check(a)) ? PyFloat_AsDouble(a) : NAN;
  Py_XDECREF(a);
  PyErr_Clear();
  return r;
}

/* Whether obj.name is true: 0 or 1, dflt when obj has no such attribute,
 * -1 when it has no truth value (no exception kept). */
static inline int flag_attr(PyObject *obj, const char *name, int dflt)
{
  PyObject *a = PyObject_GetAttrString(obj, name);
  int r = a ? PyObject_IsTrue(a) : dflt;
  Py_XDECREF(a);
  PyErr_Clear();
  return r;
}

/* 1 when obj.name is an instance of torch.nn.<cls> exactly (a subclass may
 * compute something else), 0 when not, -1 when obj has no such attribute
 * (no exception kept). */
static inline int attr_is(PyObject *obj, const char *name, const char *cls)
{
  PyObject *a = PyObject_GetAttrString(obj, name);
  PyObject *nn = a ? PyImport_ImportModule("torch.nn") : NULL;
  PyObject *c = nn ? PyObject_GetAttrString(nn, cls) : NULL;
  int r = !a ? -1 : c && (PyObject *)Py_TYPE(a) == c;
  Py_XDECREF(c);
  Py_XDECREF(nn);
  Py_XDECREF(a);
  PyErr_Clear();
  return r;
}

/* Whether module would apply its dropout submodule `name`: 1 when it is
 * training and the dropout's p is not 0, 0 when not, -1 when that cannot
 * be told (no such submodule, no number p, no training flag). */
static inline int dropout_at_work(PyObject *module, const char *name)
{
  int training = flag_attr(module, "training", -1);
  PyObject *d = PyObject_GetAttrString(module, name);
  double p = d ? float_attr(d, "p") : NAN;
  Py_XDECREF(d);
  PyErr_Clear();
  if (training < 0 || isnan(p) || p < 0)
    return -1;
  return training && p != 0.0;
}

/* t.dim() as a C long; -1 when t has none (no exception kept). */
static inline long rank_of(PyObject *t)
{
  PyObject *r = PyObject_HasAttrString(t, "dim") ? PyObject_CallMethod(t, "dim", NULL) : NULL;
  long n = r && PyLong_Check(r) ? PyLong_AsLong(r) : -1;
  Py_XDECREF(r);
  PyErr_Clear();
  return n;
}

/* self.<name>(x), a submodule's call.  Steals x (NULL passes through).
 * New reference, or NULL with an exception set (a missing submodule
 * raises, as in the original). */
static inline PyObject *call_submodule(PyObject *self, const char *name, PyObject *x)
{
  if (!x)
    return NULL;
  PyObject *m = PyObject_GetAttrString(self, name);
  PyObject *r = m ? PyObject_CallOneArg(m, x) : NULL;
  Py_XDECREF(m);
  Py_DECREF(x);
  return r;
}

/* A list of nrows rows of ncols floats, entry (i, j) f(i, j, arg): the
 * data of a constant table (constant_of).  New reference, or NULL with an
 * exception set. */
static inline PyObject *float_rows(long nrows, long ncols,
                                   double (*f)(long i, long j, const void *arg), const void *arg)
{
  PyObject *rows = PyList_New(nrows);
  for (long i = 0; rows && i < nrows; i++) {
    PyObject *row = PyList_New(ncols);
    for (long j = 0; row && j < ncols; j++) {
      PyObject *x = PyFloat_FromDouble(f(i, j, arg));
      if (!x) {
        Py_CLEAR(row);
        break;
      }
      PyList_SET_ITEM(row, j, x);
    }
    if (!row) {
      Py_CLEAR(rows);
      break;
    }
    PyList_SET_ITEM(rows, i, row);
  }
  return rows;
}

#endif
