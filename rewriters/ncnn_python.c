/*
 * ncnn_python.c - ncnn rewriters of Python functions, in C against the
 * CPython API.  They cannot sit on the dispatcher: while tracing, torch
 * answers Tensor.size() and Tensor.shape from the tracer without calling
 * an operator, and F.normalize is Python.
 *
 * torch.Tensor.size / torch.Tensor.shape (ncnn): ncnn has no Shape
 * operator and its converter needs static reshape targets, so sizes are
 * returned as plain ints: the export records them as constants instead of
 * Shape -> Gather chains.
 *
 * torch.nn.functional.normalize (ncnn): ncnn drops the batch axis, so a
 * normalisation over dim 1 of an NCHW tensor lands on the wrong axis; add a
 * leading axis, normalise over dim + 1, and take it off again.
 */
#include <string.h>

#include "../shim/python/glue.h"

static PyObject *origin_of_context(void)
{
  PyObject *ctx = trw__py_context_top(NULL);
  if (!ctx)
    return trw__py_raise("built-in rewriter called outside its context");
  return PyObject_GetAttrString(ctx, "origin_func");
}

/* A size as Python ints: tensors (traced sizes) become their value.  A
 * torch.SymInt stays: torch.export hands one out for a dimension the user
 * declared dynamic, its graph has no Shape chain to avoid, and int() would
 * pin the dimension, which torch.export refuses. */
static PyObject *as_int(PyObject *v)
{
  if (PyLong_Check(v) || strcmp(Py_TYPE(v)->tp_name, "SymInt") == 0) {
    Py_INCREF(v);
    return v;
  }
  return PyNumber_Long(v);
}

static PyObject *static_sizes(PyObject *r)
{
  if (!r || PyLong_Check(r) || !PySequence_Check(r))
    return r ? as_int(r) : NULL;
  PyObject *seq = PySequence_Fast(r, "size");
  Py_ssize_t n = seq ? PySequence_Fast_GET_SIZE(seq) : 0;
  PyObject *out = seq ? PyTuple_New(n) : NULL;
  for (Py_ssize_t i = 0; out && i < n; i++) {
    PyObject *v = as_int(PySequence_Fast_GET_ITEM(seq, i));
    if (!v) {
      Py_CLEAR(out);
      break;
    }
    PyTuple_SET_ITEM(out, i, v);
  }
  Py_XDECREF(seq);
  /* torch.Size keeps the type that code downstream may test for. */
  PyObject *torch = out ? PyImport_ImportModule("torch") : NULL;
  PyObject *size_type = torch ? PyObject_GetAttrString(torch, "Size") : NULL;
  PyObject *size = size_type ? PyObject_CallOneArg(size_type, out) : NULL;
  Py_XDECREF(torch);
  Py_XDECREF(size_type);
  Py_XDECREF(out);
  return size;
}

static PyObject *size_static(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
  (void)self;
  PyObject *origin = origin_of_context();
  PyObject *r = origin ? PyObject_Vectorcall(origin, args, (size_t)nargs, kwnames) : NULL;
  Py_XDECREF(origin);
  PyObject *out = static_sizes(r);
  Py_XDECREF(r);
  return out;
}
TRW__PY_BUILTIN("torch.Tensor.size", "ncnn", size_static);
TRW__PY_BUILTIN("torch.Tensor.shape", "ncnn", size_static);

/* normalize(input, p=2.0, dim=1, eps=1e-12, out=None) as
 * x / x.norm(p, dim, keepdim=True).clamp_min(eps): torch's own version
 * expands the norm with expand_as, which exports as Shape + Expand. */
static PyObject *normalize_keep_batch(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames)
{
  (void)self;
  static const char *const names[] = {"input", "p", "dim", "eps", "out"};
  PyObject *v[5] = {NULL, NULL, NULL, NULL, NULL};
  for (Py_ssize_t i = 0; i < nargs && i < 5; i++)
    v[i] = args[i];
  Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; k++) {
    const char *key = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
    for (int j = 0; key && j < 5; j++)
      if (strcmp(key, names[j]) == 0)
        v[j] = args[nargs + k];
  }
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  double p = v[1] ? PyFloat_AsDouble(v[1]) : 2.0;
  long dim = v[2] ? PyLong_AsLong(v[2]) : 1;
  double eps = v[3] ? PyFloat_AsDouble(v[3]) : 1e-12;
  PyObject *rank_obj = v[0] ? PyObject_CallMethod(v[0], "dim", NULL) : NULL;
  long rank = rank_obj ? PyLong_AsLong(rank_obj) : -1;
  Py_XDECREF(rank_obj);
  if (dim < 0)
    dim += rank;
  if (PyErr_Occurred() || !v[0] || dim < 0 || dim >= rank || (v[4] && v[4] != Py_None)) {
    PyErr_Clear();
    PyObject *r = PyObject_Vectorcall(origin, args, (size_t)nargs, kwnames);
    Py_DECREF(origin);
    return r;
  }
  Py_DECREF(origin);
  /* Over dim 1, work on a copy with a leading axis that ncnn can drop. */
  int lift = dim == 1;
  PyObject *x = lift ? PyObject_CallMethod(v[0], "unsqueeze", "i", 0) : (Py_INCREF(v[0]), v[0]);
  PyObject *norm = x ? PyObject_CallMethod(x, "norm", "dlO", p, dim + lift, Py_True) : NULL;
  PyObject *denom = norm ? PyObject_CallMethod(norm, "clamp_min", "d", eps) : NULL;
  PyObject *q = denom ? PyNumber_TrueDivide(x, denom) : NULL;
  PyObject *out = q && lift ? PyObject_CallMethod(q, "squeeze", "i", 0) : (Py_XINCREF(q), q);
  Py_XDECREF(x);
  Py_XDECREF(norm);
  Py_XDECREF(denom);
  Py_XDECREF(q);
  return out;
}
TRW__PY_BUILTIN("torch.nn.functional.normalize", "ncnn", normalize_keep_batch);
