/*
 * ncnn_python.c - ncnn rewriters of Python functions, in C against the
 * CPython API.  They cannot sit on the dispatcher: while tracing, torch
 * answers Tensor.size() and Tensor.shape from the tracer without calling
 * an operator, and F.normalize is Python.
 *
 * torch.Tensor.size / torch.Tensor.shape (ncnn): ncnn has no Shape
 * operator and its converter needs static reshape targets, so sizes are
 * returned as constants (0-dim tensors, as the tracer's, that it does not
 * trace): the export records them as constants instead of Shape -> Gather
 * chains.
 *
 * torch.nn.functional.normalize (ncnn): ncnn drops the batch axis, so a
 * normalisation over dim 1 of an NCHW tensor lands on the wrong axis; add a
 * leading axis, normalise over dim + 1, and take it off again.
 *
 * torch.nn.functional.adaptive_avg_pool2d (ncnn, torch.export): a global
 * pool of a channels-last tensor as the mean torch computes, without the
 * restride that torch.export's file writes as a Gather ncnn refuses.
 */
#include "py_util.h"

/* ------------------------------------------------------------------------ */
/* Sizes as constants                                                        */

/*
 * While tracing, torch answers x.size(i) and x.shape with 0-dim tensors
 * that the graph computes (Shape, Gather), and model code written for the
 * tracer relies on them being tensors: torchvision's detection models call
 * .float() or .to() on a size element and torch.stack sizes, which plain
 * ints (what mmdeploy's rewriter returns) cannot do.  ncnn wants the sizes
 * constant, so the rewriter returns what the tracer returns, 0-dim int64
 * tensors in a torch.Size, but made while the tracer looks away: the graph
 * holds them (and what the model computes from them) as constants, which
 * the export folds.  Whatever works with the tracer's sizes works with
 * these.
 */

/* A 0-dim int64 tensor of v's value that no trace records (the tracer
 * bakes it in as a constant where it is used).  New reference. */
static PyObject *constant_tensor(PyObject *v)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *c = torch ? PyObject_GetAttrString(torch, "_C") : NULL;
  PyObject *state = c ? PyObject_CallMethod(c, "_get_tracing_state", NULL) : NULL;
  PyObject *as_int = state ? PyNumber_Long(v) : NULL; /* a traced size's value */
  PyObject *t = NULL;
  PyObject *off = NULL;
  /* An empty dimension stays the tracer's: a constant 0 in a Reshape's
   * shape means "keep the input's", and torch's ONNX shape inference
   * refuses a constant shape with a 0 and no -1 (maskrcnn's and
   * keypointrcnn's heads reshape what has no detection in the example). */
  if (as_int && PyLong_Check(as_int) && PyLong_AsLong(as_int) == 0) {
    decline_info("a size of 0 stays the tracer's (as a constant, Reshape would read it as 'keep the "
                 "input's')");
    Py_CLEAR(as_int);
    t = Py_NewRef(v);
  }
  if (as_int && (state == Py_None ||
                 (off = PyObject_CallMethod(c, "_set_tracing_state", "O", Py_None)) != NULL)) {
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
  Py_XDECREF(off);
  Py_XDECREF(as_int);
  Py_XDECREF(state);
  Py_XDECREF(c);
  Py_XDECREF(torch);
  return t;
}

/* A size as a constant tensor.  A torch.SymInt stays: torch.export hands
 * one out for a dimension the user declared dynamic, its graph has no
 * Shape chain to avoid, and int() would pin the dimension, which
 * torch.export refuses. */
static PyObject *as_static(PyObject *v)
{
  if (strcmp(Py_TYPE(v)->tp_name, "SymInt") == 0)
    return Py_NewRef(v);
  return constant_tensor(v);
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
  /* A torch.Size, as the tracer's: made as the tuple it is, since
   * torch.Size() would turn tensors the tracer does not know into ints. */
  PyObject *torch = out ? PyImport_ImportModule("torch") : NULL;
  PyObject *size_type = torch ? PyObject_GetAttrString(torch, "Size") : NULL;
  PyObject *a = size_type ? PyTuple_Pack(1, out) : NULL;
  PyObject *size = a && PyType_Check(size_type)
                       ? PyTuple_Type.tp_new((PyTypeObject *)size_type, a, NULL)
                       : NULL;
  Py_XDECREF(a);
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
      passed_through("not traced by torch's TorchScript tracer: sizes are ints already");
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
    return to_original(origin, "not a tensor with a float p, an int dim in range and no out=",
                       args, nargs, kwnames);
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

/* ------------------------------------------------------------------------ */
/* A global pool without its restride                                        */

/*
 * aten::adaptive_avg_pool2d of output 1x1 is x.mean((-1, -2), keepdim=True)
 * in torch's C++, and when x is in channels-last order (EdgeNeXt's and
 * ConvNeXt's blocks permute to NHWC and back, so their stages end so) it
 * then restrides the result in place: as_strided_((N, C, 1, 1),
 * (C, 1, C, C)).  torch.export captures the restride, and its ONNX
 * translation is a Reshape to 1-D and a Gather of constant 4-D indices,
 * which pnnx leaves without an ncnn layer ("layer Gather not exists or
 * registered").  The strides of an (N, C, 1, 1) tensor do not change the
 * order of its elements, and ONNX has no strides: the mean alone is the
 * same value.  The TorchScript tracer records the pool as one operator
 * (GlobalAveragePool), so there the call goes to the original; so does a
 * pool of another output size or of an input in contiguous order (no
 * restride to drop).
 */

enum { P_INPUT, P_OUTPUT_SIZE, P_COUNT };

static const char *const pool_params[P_COUNT] = {"input", "output_size"};

/* Whether o is 1, or a sequence of two 1s. */
static int is_one_by_one(PyObject *o)
{
  if (PyLong_Check(o) && !PyBool_Check(o))
    return PyLong_AsLong(o) == 1;
  if (!PyTuple_Check(o) && !PyList_Check(o))
    return 0;
  PyObject *seq = PySequence_Fast(o, "output_size");
  int ok = seq && PySequence_Fast_GET_SIZE(seq) == 2;
  for (Py_ssize_t i = 0; ok && i < 2; i++) {
    PyObject *e = PySequence_Fast_GET_ITEM(seq, i);
    ok = PyLong_Check(e) && !PyBool_Check(e) && PyLong_AsLong(e) == 1;
  }
  Py_XDECREF(seq);
  PyErr_Clear();
  return ok;
}

/* Whether x is in channels-last order and not in contiguous order (what
 * makes torch restride the pool's result). */
static int channels_last_only(PyObject *x)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *fmt = torch ? PyObject_GetAttrString(torch, "channels_last") : NULL;
  PyObject *kw = fmt ? Py_BuildValue("{s:O}", "memory_format", fmt) : NULL;
  PyObject *m = kw ? PyObject_GetAttrString(x, "is_contiguous") : NULL;
  PyObject *empty = m ? PyTuple_New(0) : NULL;
  PyObject *last = empty ? PyObject_Call(m, empty, kw) : NULL;
  PyObject *plain = last == Py_True ? PyObject_CallNoArgs(m) : NULL;
  int r = last == Py_True && plain == Py_False;
  Py_XDECREF(plain);
  Py_XDECREF(last);
  Py_XDECREF(empty);
  Py_XDECREF(m);
  Py_XDECREF(kw);
  Py_XDECREF(fmt);
  Py_XDECREF(torch);
  PyErr_Clear();
  return r;
}

/* Why the bound call v is not one the rewrite covers, or NULL when it is. */
static const char *pool_not_covered(PyObject *const *v)
{
  if (!v[P_INPUT] || !v[P_OUTPUT_SIZE])
    return "arguments that do not bind to its signature (the original raises)";
  if (!under_torch_export())
    return "the TorchScript exporter records the pool as one operator (GlobalAveragePool)";
  if (rank_of(v[P_INPUT]) != 4 || !is_one_by_one(v[P_OUTPUT_SIZE]))
    return "not a global pool (an output of 1x1) of an (N, C, H, W) tensor";
  if (!channels_last_only(v[P_INPUT]))
    return "the input is in contiguous order (torch writes no restride)";
  return NULL;
}

static PyObject *global_pool_unstrided(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
  (void)self;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[P_COUNT];
  const char *why = unbound_call(origin, pool_params, P_COUNT, args, nargs, kwnames, v);
  if (!why)
    why = pool_not_covered(v);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  PyObject *dims = Py_BuildValue("(ii)", -1, -2);
  PyObject *mean = dims ? PyObject_GetAttrString(v[P_INPUT], "mean") : NULL;
  PyObject *a = mean ? PyTuple_Pack(1, dims) : NULL;
  PyObject *kw = a ? Py_BuildValue("{s:O}", "keepdim", Py_True) : NULL;
  PyObject *r = kw ? PyObject_Call(mean, a, kw) : NULL;
  Py_XDECREF(kw);
  Py_XDECREF(a);
  Py_XDECREF(mean);
  Py_XDECREF(dims);
  return r;
}
TRW__PY_BUILTIN("torch.nn.functional.adaptive_avg_pool2d", "ncnn", global_pool_unstrided);
