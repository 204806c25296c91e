/*
 * ncnn_python.c - ncnn rewriters of Python functions, in C against the
 * CPython API.  They cannot sit on the dispatcher: while tracing, torch
 * answers Tensor.size() and Tensor.shape from the tracer without calling
 * an operator, and F.normalize is Python.
 *
 * torch.Tensor.size / torch.Tensor.shape (ncnn): ncnn has no Shape
 * operator and its converter needs static reshape targets, so sizes are
 * returned as constants (StaticSize: ints that also act as the tracer's
 * 0-dim tensors): the export records them as constants instead of
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

/* Says at info level why the running built-in leaves a call to the
 * original (the C rewriters' trw_decline). */
static void decline_info(const char *why)
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

/* ------------------------------------------------------------------------ */
/* torchrw.StaticSize                                                        */

/*
 * While tracing, torch answers x.size(i) and x.shape[i] with 0-dim tensors
 * that the graph computes (Shape, Gather), and model code is written for
 * that as much as for ints: torchvision's detection models call .float()
 * or .to() on a size element, or torch.stack sizes, which an int cannot
 * do.  ncnn wants the sizes constant, so the rewriter returns them as
 * StaticSize: an int (arithmetic, indexing, range, int lists of torch's
 * functions, isinstance(s, int) all see the example's value, recorded as
 * a constant), which also does what the tracer's tensor does:
 *   - a Tensor method or attribute an int lacks (s.float(), s.to(...),
 *     s.unsqueeze(0), s.dtype) is the 0-dim int64 tensor's;
 *   - a torch function given one where it takes a tensor (torch.stack of
 *     sizes, x * s) receives it as that tensor, through torch's
 *     __torch_function__ protocol.
 * The tensor is made while the tracer looks away, so the graph holds it as
 * a constant: what the model computes from sizes is static either way.
 */
typedef struct {
  PyLongObject base;
} StaticSize;

/* A 0-dim int64 tensor of v's value that no trace records (the tracer
 * bakes it in as a constant where it is used).  New reference. */
static PyObject *constant_tensor(PyObject *v)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *c = torch ? PyObject_GetAttrString(torch, "_C") : NULL;
  PyObject *state = c ? PyObject_CallMethod(c, "_get_tracing_state", NULL) : NULL;
  PyObject *as_int = state ? PyNumber_Long(v) : NULL; /* a plain int */
  PyObject *t = NULL;
  if (as_int && (state == Py_None ||
                 PyObject_CallMethod(c, "_set_tracing_state", "O", Py_None) != NULL)) {
    PyObject *dtype = PyObject_GetAttrString(torch, "int64");
    PyObject *tensor = PyObject_GetAttrString(torch, "tensor");
    PyObject *kw = dtype ? Py_BuildValue("{s:O}", "dtype", dtype) : NULL;
    PyObject *a = PyTuple_Pack(1, as_int);
    t = tensor && kw && a ? PyObject_Call(tensor, a, kw) : NULL;
    Py_XDECREF(dtype);
    Py_XDECREF(tensor);
    Py_XDECREF(kw);
    Py_XDECREF(a);
    if (state != Py_None) {
      PyObject *type, *value, *tb;
      PyErr_Fetch(&type, &value, &tb);
      PyObject *r = PyObject_CallMethod(c, "_set_tracing_state", "O", state);
      if (!r)
        PyErr_Clear();
      Py_XDECREF(r);
      PyErr_Restore(type, value, tb);
    }
  }
  Py_XDECREF(as_int);
  Py_XDECREF(state);
  Py_XDECREF(c);
  Py_XDECREF(torch);
  return t;
}

static PyTypeObject StaticSizeType;

/* o with every StaticSize (also inside lists and tuples) made a tensor.
 * New reference. */
static PyObject *tensors_for_sizes(PyObject *o)
{
  if (PyObject_TypeCheck(o, &StaticSizeType))
    return constant_tensor(o);
  int is_list = PyList_CheckExact(o);
  if (!is_list && !PyTuple_CheckExact(o))
    return Py_NewRef(o);
  Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
  PyObject *out = is_list ? PyList_New(n) : PyTuple_New(n);
  for (Py_ssize_t i = 0; out && i < n; i++) {
    PyObject *e = tensors_for_sizes(PySequence_Fast_GET_ITEM(o, i));
    if (!e) {
      Py_CLEAR(out);
      break;
    }
    if (is_list)
      PyList_SET_ITEM(out, i, e);
    else
      PyTuple_SET_ITEM(out, i, e);
  }
  return out;
}

/* __torch_function__(cls, func, types, args=(), kwargs=None) */
static PyObject *static_size_torch_function(PyObject *cls, PyObject *const *args,
                                            Py_ssize_t nargs)
{
  (void)cls;
  if (nargs < 3)
    return PyErr_Format(PyExc_TypeError, "__torch_function__ takes func, types, args");
  PyObject *func = args[0];
  PyObject *call_args = tensors_for_sizes(nargs > 2 ? args[2] : Py_None);
  PyObject *kw = NULL;
  if (call_args && nargs > 3 && args[3] != Py_None && PyDict_Check(args[3])) {
    kw = PyDict_New();
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (kw && PyDict_Next(args[3], &pos, &k, &v)) {
      PyObject *t = tensors_for_sizes(v);
      if (!t || PyDict_SetItem(kw, k, t) != 0)
        Py_CLEAR(kw);
      Py_XDECREF(t);
    }
    if (!kw)
      Py_CLEAR(call_args);
  }
  PyObject *r = NULL;
  if (call_args && PyTuple_Check(call_args))
    r = PyObject_Call(func, call_args, kw);
  else if (call_args)
    PyErr_SetString(PyExc_TypeError, "__torch_function__: args is not a tuple");
  Py_XDECREF(call_args);
  Py_XDECREF(kw);
  return r;
}

/* Attributes an int lacks are the tensor's (s.float(), s.dtype). */
static PyObject *static_size_getattro(PyObject *self, PyObject *name)
{
  PyObject *r = PyObject_GenericGetAttr(self, name);
  if (r || !PyErr_ExceptionMatches(PyExc_AttributeError))
    return r;
  const char *n = PyUnicode_AsUTF8(name);
  if (!n || strncmp(n, "__", 2) == 0)
    return NULL;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyObject *t = constant_tensor(self);
  r = t ? PyObject_GetAttr(t, name) : NULL;
  Py_XDECREF(t);
  if (r) {
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
  } else {
    PyErr_Clear();
    PyErr_Restore(type, value, tb); /* the int's own AttributeError */
  }
  return r;
}

static PyMethodDef static_size_methods[] = {
    {"__torch_function__", (PyCFunction)(void (*)(void))static_size_torch_function,
     METH_FASTCALL | METH_CLASS, "Tensor arguments of torch functions as 0-dim tensors."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject StaticSizeType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.StaticSize",
    .tp_basicsize = 0, /* PyLong's, variable-sized */
    .tp_getattro = static_size_getattro,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_LONG_SUBCLASS,
    .tp_methods = static_size_methods,
    .tp_doc = "A size ncnn's Tensor.size rewriter made constant: an int that also "
              "acts as the 0-dim tensor torch's tracer would have given.",
};

/* v as a StaticSize.  New reference. */
static PyObject *static_size(PyObject *v)
{
  if (!StaticSizeType.tp_base) {
    StaticSizeType.tp_base = &PyLong_Type;
    if (PyType_Ready(&StaticSizeType) < 0)
      return NULL;
  }
  PyObject *as_int = PyNumber_Long(v);
  PyObject *r = as_int ? PyObject_CallOneArg((PyObject *)&StaticSizeType, as_int) : NULL;
  Py_XDECREF(as_int);
  return r;
}

/* A size as a StaticSize: tensors (traced sizes) and ints become one.  A
 * torch.SymInt stays: torch.export hands one out for a dimension the user
 * declared dynamic, its graph has no Shape chain to avoid, and int() would
 * pin the dimension, which torch.export refuses. */
static PyObject *as_static(PyObject *v)
{
  if (strcmp(Py_TYPE(v)->tp_name, "SymInt") == 0)
    return Py_NewRef(v);
  return static_size(v);
}

static PyObject *static_sizes(PyObject *r)
{
  if (!r || PyLong_Check(r) || !PySequence_Check(r))
    return r ? as_static(r) : NULL;
  PyObject *seq = PySequence_Fast(r, "size");
  Py_ssize_t n = seq ? PySequence_Fast_GET_SIZE(seq) : 0;
  PyObject *out = seq ? PyTuple_New(n) : NULL;
  for (Py_ssize_t i = 0; out && i < n; i++) {
    PyObject *v = as_static(PySequence_Fast_GET_ITEM(seq, i));
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

/* torch.export's exporter (or any capture that is not the TorchScript
 * tracer) hands out ints and SymInts already, never traced tensors: there
 * is nothing to make static. */
static int under_tracer(void)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *c = torch ? PyObject_GetAttrString(torch, "_C") : NULL;
  PyObject *state = c ? PyObject_CallMethod(c, "_get_tracing_state", NULL) : NULL;
  int tracing = state && state != Py_None;
  Py_XDECREF(state);
  Py_XDECREF(c);
  Py_XDECREF(torch);
  PyErr_Clear();
  return tracing;
}

static PyObject *size_static(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
  (void)self;
  PyObject *origin = origin_of_context();
  PyObject *r = origin ? PyObject_Vectorcall(origin, args, (size_t)nargs, kwnames) : NULL;
  Py_XDECREF(origin);
  if (!r || !under_tracer()) {
    if (r)
      decline_info("not traced by torch's TorchScript tracer: sizes are ints already");
    return r;
  }
  PyObject *out = static_sizes(r);
  Py_DECREF(r);
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
    decline_info("not a tensor with a float p, an int dim in range and no out=");
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
