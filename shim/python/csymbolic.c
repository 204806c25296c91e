/*
 * csymbolic.c - symbolic rewriters written in C (torchrw.h: trw_graph,
 * trw_sym, trw_g_op ...).  torch.onnx calls a symbolic with a GraphContext
 * and torch._C.Value inputs; this file hands them to C as opaque handles
 * and turns the C calls back into g.op(...).
 */
#include <stdarg.h>
#include <string.h>

#include "../adapter/adapter.h"
#include "glue.h"

/* Handles live in blocks owned by the graph of one call. */
struct trw_sym {
  PyObject *v; /* a torch._C.Value, a tuple of them, or None */
};

#define SYMS_PER_BLOCK 64
typedef struct symblock {
  struct symblock *next;
  size_t n;
  trw_sym items[SYMS_PER_BLOCK];
} symblock;

struct trw_graph {
  PyObject *g;
  PyObject *pyctx; /* the Context: origin_func */
  symblock *blocks;
};

static trw_sym *sym_new(trw_graph *g, PyObject *v) /* steals v */
{
  if (!v)
    return NULL;
  if (!g->blocks || g->blocks->n == SYMS_PER_BLOCK) {
    symblock *b = PyMem_Calloc(1, sizeof *b);
    if (!b) {
      Py_DECREF(v);
      PyErr_NoMemory();
      return NULL;
    }
    b->next = g->blocks;
    g->blocks = b;
  }
  trw_sym *s = &g->blocks->items[g->blocks->n++];
  s->v = v;
  return s;
}

static void graph_free(trw_graph *g)
{
  while (g->blocks) {
    symblock *b = g->blocks;
    for (size_t i = 0; i < b->n; i++)
      Py_XDECREF(b->items[i].v);
    g->blocks = b->next;
    PyMem_Free(b);
  }
}

/* A Python error raised inside an API call becomes the rewriter's error. */
static int py_failed(trw_ctx *ctx, const char *what)
{
  char why[1024];
  trw__py_describe_error(why, sizeof why, 0);
  return trw_error(ctx, TRW_EOP, "%s: %s", what, why);
}

static PyObject *helper_attr(const char *name)
{
  PyObject *m = PyImport_ImportModule(trw__adapter_get()->symbolic_helper);
  PyObject *f = m ? PyObject_GetAttrString(m, name) : NULL;
  Py_XDECREF(m);
  return f;
}

/* ------------------------------------------------------------------------ */
/* Tensors for constants and tensor attributes                               */

static const char *dtype_torch_name(trw_dtype d)
{
  switch (d) {
  case TRW_DTYPE_FLOAT32: return "float32";
  case TRW_DTYPE_FLOAT64: return "float64";
  case TRW_DTYPE_FLOAT16: return "float16";
  case TRW_DTYPE_INT64: return "int64";
  case TRW_DTYPE_INT32: return "int32";
  case TRW_DTYPE_INT16: return "int16";
  case TRW_DTYPE_INT8: return "int8";
  case TRW_DTYPE_UINT8: return "uint8";
  case TRW_DTYPE_BOOL: return "bool";
  default: return NULL;
  }
}

static PyObject *element(const void *data, trw_dtype d, size_t i)
{
  switch (d) {
  case TRW_DTYPE_FLOAT32: return PyFloat_FromDouble(((const float *)data)[i]);
  case TRW_DTYPE_FLOAT64: return PyFloat_FromDouble(((const double *)data)[i]);
  case TRW_DTYPE_INT64: return PyLong_FromLongLong(((const int64_t *)data)[i]);
  case TRW_DTYPE_INT32: return PyLong_FromLong(((const int32_t *)data)[i]);
  case TRW_DTYPE_INT16: return PyLong_FromLong(((const int16_t *)data)[i]);
  case TRW_DTYPE_INT8: return PyLong_FromLong(((const int8_t *)data)[i]);
  case TRW_DTYPE_UINT8: return PyLong_FromLong(((const uint8_t *)data)[i]);
  case TRW_DTYPE_BOOL: return PyBool_FromLong(((const uint8_t *)data)[i]);
  default:
    PyErr_SetString(PyExc_TypeError, "torchrw: tensor constants of this dtype are not supported");
    return NULL;
  }
}

/* torch.tensor(data).reshape(dims) with dtype. */
static PyObject *make_tensor(const void *data, trw_dtype dtype, const int64_t *dims,
                             size_t ndims)
{
  const char *dt = dtype_torch_name(dtype);
  if (!dt || (!data && ndims)) {
    PyErr_SetString(PyExc_TypeError, "torchrw: a tensor constant needs data and a dtype");
    return NULL;
  }
  size_t count = 1;
  for (size_t i = 0; i < ndims; i++)
    count *= dims[i] > 0 ? (size_t)dims[i] : 0;
  PyObject *flat = PyList_New((Py_ssize_t)count);
  for (size_t i = 0; flat && i < count; i++) {
    PyObject *e = element(data, dtype, i);
    if (!e) {
      Py_CLEAR(flat);
      break;
    }
    PyList_SET_ITEM(flat, (Py_ssize_t)i, e);
  }
  PyObject *torch = flat ? PyImport_ImportModule("torch") : NULL;
  PyObject *dtype_obj = torch ? PyObject_GetAttrString(torch, dt) : NULL;
  PyObject *kw = dtype_obj ? Py_BuildValue("{s:O}", "dtype", dtype_obj) : NULL;
  PyObject *tensor_fn = torch ? PyObject_GetAttrString(torch, "tensor") : NULL;
  PyObject *args = flat ? PyTuple_Pack(1, flat) : NULL;
  PyObject *t = kw && tensor_fn && args ? PyObject_Call(tensor_fn, args, kw) : NULL;
  PyObject *shape = t ? PyTuple_New((Py_ssize_t)ndims) : NULL;
  for (size_t i = 0; shape && i < ndims; i++)
    PyTuple_SET_ITEM(shape, (Py_ssize_t)i, PyLong_FromLongLong(dims[i]));
  PyObject *r = shape ? PyObject_CallMethod(t, "reshape", "(O)", shape) : NULL;
  Py_XDECREF(flat);
  Py_XDECREF(torch);
  Py_XDECREF(dtype_obj);
  Py_XDECREF(kw);
  Py_XDECREF(tensor_fn);
  Py_XDECREF(args);
  Py_XDECREF(t);
  Py_XDECREF(shape);
  return r;
}

/* ------------------------------------------------------------------------ */
/* Building nodes                                                            */

static PyObject *attr_value(const trw_attr *a, char *key, size_t keylen)
{
  static const char suffix[] = {'i', 'f', 's', 'i', 'f', 't'};
  trw__fmt(key, keylen, "%s_%c", a->name, suffix[a->kind]);
  switch (a->kind) {
  case TRW_ATTR_I: return PyLong_FromLongLong(a->i);
  case TRW_ATTR_F: return PyFloat_FromDouble(a->f);
  case TRW_ATTR_S: return PyUnicode_FromString(a->s ? a->s : "");
  case TRW_ATTR_IS: {
    PyObject *l = PyList_New((Py_ssize_t)a->n);
    for (size_t i = 0; l && i < a->n; i++)
      PyList_SET_ITEM(l, (Py_ssize_t)i, PyLong_FromLongLong(a->ints[i]));
    return l;
  }
  case TRW_ATTR_FS: {
    PyObject *l = PyList_New((Py_ssize_t)a->n);
    for (size_t i = 0; l && i < a->n; i++)
      PyList_SET_ITEM(l, (Py_ssize_t)i, PyFloat_FromDouble(a->floats[i]));
    return l;
  }
  case TRW_ATTR_T: return make_tensor(a->data, a->dtype, a->dims, a->ndims);
  }
  PyErr_SetString(PyExc_ValueError, "torchrw: unknown attribute kind");
  return NULL;
}

/* An omitted optional input, as torch's symbolics write it. */
static PyObject *placeholder(PyObject *g)
{
  PyObject *f = helper_attr("_optional_input_placeholder_tensor");
  PyObject *v = f ? PyObject_CallOneArg(f, g) : NULL;
  Py_XDECREF(f);
  return v;
}

int trw_g_op_n(trw_ctx *ctx, trw_graph *g, const char *op, size_t nin, trw_sym *const in[],
               const trw_attr *attrs, size_t nattrs, size_t nout, trw_sym *out[])
{
  if (!g || !op || (nin && !in) || (nattrs && !attrs) || nout == 0 || !out)
    return trw_error(ctx, TRW_EINVAL, "trw_g_op: missing graph, op or outputs");
  PyObject *args = PyTuple_New((Py_ssize_t)nin + 1);
  PyObject *kw = PyDict_New();
  int rc = 0;
  if (!args || !kw)
    goto fail;
  PyTuple_SET_ITEM(args, 0, PyUnicode_FromString(op));
  for (size_t i = 0; i < nin; i++) {
    PyObject *v = in[i] && in[i]->v != Py_None ? in[i]->v : NULL;
    if (v)
      Py_INCREF(v);
    else if (!(v = placeholder(g->g)))
      goto fail;
    PyTuple_SET_ITEM(args, (Py_ssize_t)i + 1, v);
  }
  for (size_t i = 0; i < nattrs; i++) {
    char key[256];
    PyObject *v = attr_value(&attrs[i], key, sizeof key);
    if (!v || PyDict_SetItemString(kw, key, v) != 0) {
      Py_XDECREF(v);
      goto fail;
    }
    Py_DECREF(v);
  }
  if (nout > 1) {
    PyObject *n = PyLong_FromSize_t(nout);
    if (!n || PyDict_SetItemString(kw, "outputs", n) != 0) {
      Py_XDECREF(n);
      goto fail;
    }
    Py_DECREF(n);
  }
  PyObject *fn = PyObject_GetAttrString(g->g, "op");
  PyObject *r = fn ? PyObject_Call(fn, args, kw) : NULL;
  Py_XDECREF(fn);
  if (!r)
    goto fail;
  if (nout == 1) {
    out[0] = sym_new(g, r);
    rc = out[0] ? 0 : TRW_ENOMEM;
  } else {
    for (size_t i = 0; rc == 0 && i < nout; i++) {
      PyObject *item = PySequence_GetItem(r, (Py_ssize_t)i);
      out[i] = sym_new(g, item);
      rc = out[i] ? 0 : -1;
    }
    Py_DECREF(r);
    if (rc != 0)
      goto fail;
  }
  Py_DECREF(args);
  Py_DECREF(kw);
  return rc;
fail:
  Py_XDECREF(args);
  Py_XDECREF(kw);
  {
    char what[300];
    trw__fmt(what, sizeof what, "g.op(%s)", op);
    return py_failed(ctx, what);
  }
}

trw_sym *trw_g_op(trw_ctx *ctx, trw_graph *g, const char *op, size_t nin, trw_sym *const in[],
                  const trw_attr *attrs, size_t nattrs)
{
  trw_sym *out = NULL;
  return trw_g_op_n(ctx, g, op, nin, in, attrs, nattrs, 1, &out) == 0 ? out : NULL;
}

trw_sym *trw_g_constant(trw_ctx *ctx, trw_graph *g, const void *data, trw_dtype dtype,
                        const int64_t *dims, size_t ndims)
{
  trw_attr value = TRW_ATTR_TENSOR("value", data, dtype, dims, ndims, 0);
  return trw_g_op(ctx, g, "Constant", 0, NULL, &value, 1);
}

trw_sym *trw_g_const_ints(trw_ctx *ctx, trw_graph *g, const int64_t *v, size_t n)
{
  int64_t dims[1] = {(int64_t)n};
  return trw_g_constant(ctx, g, v, TRW_DTYPE_INT64, dims, 1);
}

trw_sym *trw_g_const_float(trw_ctx *ctx, trw_graph *g, double v)
{
  float f = (float)v;
  return trw_g_constant(ctx, g, &f, TRW_DTYPE_FLOAT32, NULL, 0);
}

trw_sym *trw_g_tuple(trw_ctx *ctx, trw_graph *g, size_t n, trw_sym *const items[])
{
  PyObject *t = PyTuple_New((Py_ssize_t)n);
  for (size_t i = 0; t && i < n; i++) {
    PyObject *v = items[i] ? items[i]->v : Py_None;
    Py_INCREF(v);
    PyTuple_SET_ITEM(t, (Py_ssize_t)i, v);
  }
  trw_sym *s = t ? sym_new(g, t) : NULL;
  if (!s)
    py_failed(ctx, "trw_g_tuple");
  return s;
}

/* ------------------------------------------------------------------------ */
/* Reading values                                                            */

int trw_sym_is_none(const trw_sym *v)
{
  if (!v || v->v == Py_None)
    return 1;
  /* torch passes missing optional inputs as prim::Constant None nodes. */
  PyObject *f = helper_attr("_is_none");
  PyObject *r = f ? PyObject_CallOneArg(f, v->v) : NULL;
  int none = r == Py_True;
  Py_XDECREF(f);
  Py_XDECREF(r);
  PyErr_Clear();
  return none;
}

static PyObject *maybe_const(const trw_sym *v, const char *desc)
{
  if (!v || v->v == Py_None)
    return NULL;
  PyObject *f = helper_attr("_maybe_get_const");
  PyObject *r = f ? PyObject_CallFunction(f, "Os", v->v, desc) : NULL;
  Py_XDECREF(f);
  PyErr_Clear();
  return r;
}

int trw_sym_const_int(const trw_sym *v, int64_t *out)
{
  PyObject *r = maybe_const(v, "i");
  int rc = TRW_ETYPE;
  if (r && PyLong_Check(r)) {
    *out = PyLong_AsLongLong(r);
    rc = 0;
  }
  Py_XDECREF(r);
  return rc;
}

int trw_sym_const_double(const trw_sym *v, double *out)
{
  PyObject *r = maybe_const(v, "f");
  int rc = TRW_ETYPE;
  if (r && (PyFloat_Check(r) || PyLong_Check(r))) {
    *out = PyFloat_AsDouble(r);
    rc = 0;
  }
  Py_XDECREF(r);
  return rc;
}

int trw_sym_const_ints(const trw_sym *v, int64_t *buf, size_t cap, size_t *n)
{
  PyObject *r = maybe_const(v, "is");
  int rc = TRW_ETYPE;
  if (r && PyList_Check(r)) {
    *n = (size_t)PyList_GET_SIZE(r);
    rc = *n > cap ? TRW_ERANGE : 0;
    for (size_t i = 0; rc == 0 && i < *n; i++)
      buf[i] = PyLong_AsLongLong(PyList_GET_ITEM(r, (Py_ssize_t)i));
  }
  Py_XDECREF(r);
  PyErr_Clear();
  return rc;
}

/* The sizes of a value: its type's, or a constant tensor's (an index that
 * torch's passes made a Constant node carries no sizes in its type).  A
 * list of ints and Nones, or NULL. */
static PyObject *sym_sizes(const trw_sym *v)
{
  if (!v || v->v == Py_None)
    return NULL;
  PyObject *f = helper_attr("_get_tensor_sizes");
  PyObject *r = f ? PyObject_CallOneArg(f, v->v) : NULL;
  Py_XDECREF(f);
  PyErr_Clear();
  if (r && PyList_Check(r))
    return r;
  Py_XDECREF(r);
  PyObject *t = maybe_const(v, "t");
  PyObject *shape = t && PyObject_HasAttrString(t, "shape") ? PyObject_GetAttrString(t, "shape")
                                                             : NULL;
  r = shape ? PySequence_List(shape) : NULL;
  Py_XDECREF(shape);
  Py_XDECREF(t);
  PyErr_Clear();
  return r;
}

int trw_sym_rank(const trw_sym *v)
{
  if (!v || v->v == Py_None)
    return -1;
  PyObject *f = helper_attr("_get_tensor_rank");
  PyObject *r = f ? PyObject_CallOneArg(f, v->v) : NULL;
  int rank = r && PyLong_Check(r) ? (int)PyLong_AsLong(r) : -1;
  Py_XDECREF(f);
  Py_XDECREF(r);
  PyErr_Clear();
  if (rank < 0) {
    PyObject *sizes = sym_sizes(v);
    rank = sizes ? (int)PyList_GET_SIZE(sizes) : -1;
    Py_XDECREF(sizes);
  }
  return rank;
}

int trw_sym_size(const trw_sym *v, int i, int64_t *out)
{
  if (!v || v->v == Py_None || !out)
    return TRW_EINVAL;
  PyObject *r = sym_sizes(v);
  int rc = TRW_ENOTFOUND;
  if (r) {
    Py_ssize_t n = PyList_GET_SIZE(r), k = i < 0 ? i + n : i;
    if (k < 0 || k >= n) {
      rc = TRW_ERANGE;
    } else {
      PyObject *s = PyList_GET_ITEM(r, k);
      if (PyLong_Check(s)) {
        *out = PyLong_AsLongLong(s);
        rc = 0;
      }
    }
  }
  Py_XDECREF(r);
  PyErr_Clear();
  return rc;
}

int trw_sym_list(trw_graph *g, const trw_sym *v, trw_sym **items, size_t cap, size_t *n)
{
  if (!g || !v || v->v == Py_None || !n)
    return TRW_EINVAL;
  PyObject *f = helper_attr("_is_packed_list");
  PyObject *packed = f ? PyObject_CallOneArg(f, v->v) : NULL;
  Py_XDECREF(f);
  PyObject *list = NULL;
  if (packed == Py_True) {
    f = helper_attr("_unpack_list");
    list = f ? PyObject_CallOneArg(f, v->v) : NULL;
    Py_XDECREF(f);
  }
  Py_XDECREF(packed);
  int rc = TRW_ETYPE;
  if (list && PyList_Check(list)) {
    *n = (size_t)PyList_GET_SIZE(list);
    rc = *n > cap ? TRW_ERANGE : 0;
    for (size_t i = 0; rc == 0 && i < *n; i++) {
      items[i] = sym_new(g, Py_NewRef(PyList_GET_ITEM(list, (Py_ssize_t)i)));
      if (!items[i])
        rc = TRW_ENOMEM;
    }
  }
  Py_XDECREF(list);
  PyErr_Clear();
  return rc;
}

trw_dtype trw_sym_dtype(const trw_sym *v)
{
  static const struct {
    const char *name;
    trw_dtype dtype;
  } names[] = {{"Float", TRW_DTYPE_FLOAT32}, {"Double", TRW_DTYPE_FLOAT64},
               {"Half", TRW_DTYPE_FLOAT16},  {"BFloat16", TRW_DTYPE_BFLOAT16},
               {"Long", TRW_DTYPE_INT64},    {"Int", TRW_DTYPE_INT32},
               {"Short", TRW_DTYPE_INT16},   {"Char", TRW_DTYPE_INT8},
               {"Byte", TRW_DTYPE_UINT8},    {"Bool", TRW_DTYPE_BOOL}};
  if (!v || v->v == Py_None)
    return TRW_DTYPE_UNKNOWN;
  PyObject *type = PyObject_CallMethod(v->v, "type", NULL);
  PyObject *st = type ? PyObject_CallMethod(type, "scalarType", NULL) : NULL;
  const char *s = st && PyUnicode_Check(st) ? PyUnicode_AsUTF8(st) : NULL;
  trw_dtype d = TRW_DTYPE_UNKNOWN;
  for (size_t i = 0; s && i < sizeof names / sizeof names[0]; i++)
    if (strcmp(s, names[i].name) == 0)
      d = names[i].dtype;
  Py_XDECREF(type);
  Py_XDECREF(st);
  PyErr_Clear();
  return d;
}

int trw_call_original_symbolic(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                               trw_sym **result)
{
  if (!g || !result || (nin && !in))
    return trw_error(ctx, TRW_EINVAL, "trw_call_original_symbolic: missing arguments");
  PyObject *origin = PyObject_GetAttrString(g->pyctx, "origin_func");
  if (!origin || origin == Py_None) {
    Py_XDECREF(origin);
    PyErr_Clear();
    return trw_error(ctx, TRW_ENOTFOUND, "there is no original symbolic to call");
  }
  PyObject *args = PyTuple_New((Py_ssize_t)nin + 1);
  if (args) {
    Py_INCREF(g->g);
    PyTuple_SET_ITEM(args, 0, g->g);
    for (size_t i = 0; i < nin; i++) {
      PyObject *v = in[i] ? in[i]->v : Py_None;
      Py_INCREF(v);
      PyTuple_SET_ITEM(args, (Py_ssize_t)i + 1, v);
    }
  }
  PyObject *r = args ? PyObject_Call(origin, args, NULL) : NULL;
  Py_XDECREF(args);
  Py_DECREF(origin);
  if (!r)
    return py_failed(ctx, "the original symbolic");
  *result = sym_new(g, r);
  return *result ? 0 : TRW_ENOMEM;
}

int trw_decline_symbolic(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                         trw_sym **result, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  trw__log_declined(ctx, "the original symbolic", fmt, ap);
  va_end(ap);
  return trw_call_original_symbolic(ctx, g, nin, in, result);
}

/* ------------------------------------------------------------------------ */
/* The call from torch.onnx                                                  */

static PyObject *c_call(trw__rewriter *rw, PyObject *pyctx, const trw_env *env,
                        PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
  (void)kwnames; /* node attributes: C symbolics read constant inputs */
  if (nargs < 1)
    return trw__py_raise("%s: symbolic called without a graph", rw->stable);
  trw_graph g = {args[0], pyctx, NULL};
  trw_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.rw = rw;
  ctx.env = env;
  ctx.op = rw->name;
  ctx.frame = &g;
  size_t nin = (size_t)(nargs - 1);
  trw_sym **in = PyMem_Calloc(nin + 1, sizeof *in);
  PyObject *result = NULL;
  int rc = in ? 0 : TRW_ENOMEM;
  for (size_t i = 0; rc == 0 && i < nin; i++) {
    Py_INCREF(args[i + 1]);
    in[i] = sym_new(&g, args[i + 1]);
    rc = in[i] ? 0 : TRW_ENOMEM;
  }
  trw_sym *out = NULL;
  if (rc == 0)
    rc = ((trw_symbolic_fn)rw->fn)(&ctx, &g, nin, in, &out);
  if (rc == 0 && !out)
    rc = trw_error(&ctx, TRW_EINVAL, "the symbolic returned no value");
  PyErr_Clear();
  if (rc == 0) {
    result = out->v;
    Py_INCREF(result);
  } else {
    char msg[2048];
    trw__ctx_failure(&ctx, rc, msg, sizeof msg);
    PyErr_SetString(PyExc_RuntimeError, msg);
  }
  PyMem_Free(in);
  graph_free(&g);
  return result;
}

int trw__py_csymbolic_ready(PyObject *m)
{
  (void)m;
  trw__py_symbolic_c_call = c_call;
  return 0;
}
