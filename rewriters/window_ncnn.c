/*
 * window_ncnn.c - timm's window and grid partitions for ncnn, rewriters
 * of the Python functions timm.models.swin_transformer.window_partition
 * and window_reverse, and timm.models.maxxvit.window_partition,
 * window_reverse, grid_partition and grid_reverse, in C against the
 * CPython API.
 *
 * ncnn's blobs have at most 4 dims, and ncnn takes dim 0 for the batch.
 * timm cuts a channels-last image (B, H, W, C) into windows of a x b
 * pixels, (B * nW, a, b, C), through a 6-dim tensor: a block partition
 * (Swin, MaxViT's block attention) as
 *
 *   x.view(B, H/a, a, W/b, b, C).permute(0, 1, 3, 2, 4, 5).view(-1, a, b, C)
 *
 * and MaxViT's grid partition (windows whose pixels are H/a and W/b apart)
 * with view(B, a, H/a, b, W/b, C).permute(0, 2, 4, 1, 3, 5).  pnnx
 * converts the graph but leaves the 6-dim reshapes without an ncnn layer,
 * and ncnn refuses to load it ("layer Tensor.reshape not exists or
 * registered").  The rewrite reaches the same order of elements in two
 * swaps of neighbouring groups of dims, each a reshape to 4 dims and a
 * transpose(1, 2), with the batch alone in dim 0 throughout (written -1,
 * so it is never baked in).  For a block partition, with nH = H/a and
 * nW = W/b:
 *
 *   x.reshape(-1, H, nW, b*C).transpose(1, 2)          (B, nW, H, b*C)
 *    .reshape(-1, nW, nH, a*b*C).transpose(1, 2)       (B, nH, nW, a*b*C)
 *    .reshape(-1, a, b, C)                             (B*nH*nW, a, b, C)
 *
 * and for a grid partition, with sH = H/a and sW = W/b:
 *
 *   x.reshape(-1, H*b, sW, C).transpose(1, 2)          (B, sW, a*sH*b, C)
 *    .reshape(-1, sW*a, sH, b*C).transpose(1, 2)       (B, sH, sW*a, b*C)
 *    .reshape(-1, a, b, C)                             (B*sH*sW, a, b, C)
 *
 * The reverses run the same steps backwards, ending in (-1, H, W, C).
 * The batch is folded into dim 0 only where the functions' own contract
 * folds it, in the windows: the partitions return and the reverses take
 * every image's windows in dim 0, and timm's attention works on them so.
 * No tensor of the rewrite mixes the batch with another dim, so each of
 * them is what ncnn runs with its batch of one, dim 0 dropped; pnnx
 * handles the windows' tensors as it does the rest of the model's
 * (tests/export/test_builtin_window_ncnn.py runs such a graph in ncnn).
 *
 * H, W, C and the window's sizes are read as ints, with the tracer
 * looking away, and the reshapes' targets but the batch are constants, as
 * pnnx needs them; a batch torch.export keeps dynamic stays so.  A call
 * that does not fit goes to the original, with the reason at info: a
 * tensor that is not 4-dim, a size other than the batch's that is not a
 * plain int (H, W or C kept dynamic by torch.export), an empty tensor, a
 * window size that is not two positive ints, sizes the windows do not
 * divide (the original raises), windows that are not (N, a, b, C) with N a
 * multiple of the windows per image, or a signature this file does not
 * know (a later timm).  timm's NCHW variants (window_partition_nchw, for
 * use_nchw_attn) are not covered.
 *
 * swin and maxxvit call these functions through their module's globals,
 * which is where torchrw patches them; another module's alias of them
 * (`from timm.models.maxxvit import window_partition`) is patched too.
 */
#include "py_util.h"

/* ------------------------------------------------------------------------ */
/* Sizes as ints                                                             */

/* fn(arg) with torch's tracer looking away (py_util.h's call_untraced),
 * so that sizes come back as ints rather than traced tensors and int() of
 * a 0-dim tensor is not recorded (or warned about).  New reference, or
 * NULL with an exception set. */
static PyObject *untraced_call(PyObject *fn, PyObject *arg)
{
  PyObject *args = PyTuple_Pack(1, arg);
  PyObject *r = args ? call_untraced(fn, args, NULL) : NULL;
  Py_XDECREF(args);
  return r;
}

/* torch._C.TensorBase's method `name` (torch 1.13 calls the class
 * _TensorBase): torch's own, as the attribute on torch.Tensor may be a
 * torchrw size rewriter.  New reference, or NULL with an exception set. */
static PyObject *tensor_base_method(const char *name)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *c = torch ? PyObject_GetAttrString(torch, "_C") : NULL;
  PyObject *base = NULL;
  if (c && !(base = PyObject_GetAttrString(c, "TensorBase"))) { /* torch 2.x */
    PyErr_Clear();
    base = PyObject_GetAttrString(c, "_TensorBase"); /* torch 1.13 */
  }
  PyObject *m = base ? PyObject_GetAttrString(base, name) : NULL;
  Py_XDECREF(base);
  Py_XDECREF(c);
  Py_XDECREF(torch);
  return m;
}

/* A torch.SymInt: torch.export's stand-in for a dimension it keeps
 * dynamic.  int() of one would pin the dimension, which torch.export
 * refuses. */
static int is_symint(PyObject *o)
{
  return strcmp(Py_TYPE(o)->tp_name, "SymInt") == 0;
}

/* t's sizes as C longs when t is a tensor of 4 dims with plain int sizes
 * but perhaps the batch's: out[0] is -1 for a batch torch.export keeps
 * dynamic (a SymInt), which the rewrite leaves to reshape's -1.  NULL (out
 * filled), or the reason it is not, with no exception kept. */
static const char *sizes4(PyObject *t, long out[4])
{
  PyObject *size = tensor_base_method("size");
  PyObject *r = size ? untraced_call(size, t) : NULL;
  const char *why = NULL;
  if (!r || !PyTuple_Check(r))
    why = "not a tensor";
  else if (PyTuple_GET_SIZE(r) != 4)
    why = "not a tensor of 4 dims (B, H, W, C)";
  for (Py_ssize_t i = 0; !why && i < 4; i++) {
    PyObject *s = PyTuple_GET_ITEM(r, i);
    if (i == 0 && is_symint(s))
      out[i] = -1;
    else if (!PyLong_Check(s))
      why = "a size that is not a plain int (a dimension kept dynamic)";
    else if ((out[i] = PyLong_AsLong(s)) <= 0)
      why = "an empty tensor";
  }
  Py_XDECREF(r);
  Py_XDECREF(size);
  PyErr_Clear();
  return why;
}

/* o as a C long: a Python int, or a 0-dim integer tensor (a size the
 * tracer or torchrw's ncnn size rewriter handed out).  0 and *out set, or
 * -1 (a SymInt, anything else), with no exception kept. */
static int as_long(PyObject *o, long *out)
{
  if (!o || is_symint(o))
    return -1;
  PyObject *index = PyLong_Check(o) ? Py_NewRef(o) : NULL;
  if (!index) {
    /* operator.index, not int(): a float tensor has no index, as its size
     * would have none in the original's view() either. */
    PyObject *operator = PyImport_ImportModule("operator");
    PyObject *to_index = operator ? PyObject_GetAttrString(operator, "index") : NULL;
    PyObject *dim = PyObject_HasAttrString(o, "dim") ? PyObject_CallMethod(o, "dim", NULL) : NULL;
    if (to_index && dim && PyLong_Check(dim) && PyLong_AsLong(dim) == 0)
      index = untraced_call(to_index, o);
    Py_XDECREF(dim);
    Py_XDECREF(to_index);
    Py_XDECREF(operator);
  }
  *out = index && PyLong_Check(index) ? PyLong_AsLong(index) : -1;
  Py_XDECREF(index);
  PyErr_Clear();
  return *out == -1 ? -1 : 0;
}

/* seq as two positive C longs (a window or grid size, a (H, W)).  0, or -1
 * with no exception kept. */
static int as_pair(PyObject *seq, long out[2])
{
  PyObject *fast = seq && !PyUnicode_Check(seq) && PySequence_Check(seq)
                       ? PySequence_Fast(seq, "pair")
                       : NULL;
  int ok = fast && PySequence_Fast_GET_SIZE(fast) == 2;
  for (int i = 0; ok && i < 2; i++)
    ok = as_long(PySequence_Fast_GET_ITEM(fast, i), &out[i]) == 0 && out[i] > 0;
  Py_XDECREF(fast);
  PyErr_Clear();
  return ok ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* The functions                                                             */

typedef struct {
  const char *const *params; /* the parameters, in order */
  int nparams;
  int grid;    /* grid windows (strided), else blocks */
  int reverse; /* windows back into the image, else the image into windows */
  int hw_pair; /* a reverse's image size as img_size, else as H and W */
} layout;

static const char *const partition_params[] = {"x", "window_size"};
static const char *const grid_params[] = {"x", "grid_size"};
static const char *const swin_reverse_params[] = {"windows", "window_size", "H", "W"};
static const char *const maxvit_reverse_params[] = {"windows", "window_size", "img_size"};
static const char *const maxvit_grid_reverse_params[] = {"windows", "grid_size", "img_size"};

static const layout swin_window_partition = {partition_params, 2, 0, 0, 0};
static const layout swin_window_reverse = {swin_reverse_params, 4, 0, 1, 0};
static const layout maxvit_window_partition = {partition_params, 2, 0, 0, 0};
static const layout maxvit_window_reverse = {maxvit_reverse_params, 3, 0, 1, 1};
static const layout maxvit_grid_partition = {grid_params, 2, 1, 0, 0};
static const layout maxvit_grid_reverse = {maxvit_grid_reverse_params, 3, 1, 1, 1};

/* The reshapes of the rewrite (the file's comment): shape[0] and shape[1]
 * are each followed by transpose(1, 2), shape[2] is the result's. */
typedef struct {
  long shape[3][4];
} plan;

/* Sets one of p's shapes, the batch (-1) first. */
static void set_shape(plan *p, int i, long d1, long d2, long d3)
{
  p->shape[i][0] = -1;
  p->shape[i][1] = d1;
  p->shape[i][2] = d2;
  p->shape[i][3] = d3;
}

/* Why the call is not one the rewrite covers, or NULL with *p filled.  v
 * holds the bound arguments. */
static const char *not_covered(const layout *l, PyObject *const *v, plan *p)
{
  for (int i = 0; i < l->nparams; i++)
    if (!v[i])
      return "a required argument is missing (the original raises)";
  long s[4], win[2], hw[2];
  const char *why = sizes4(v[0], s);
  if (why)
    return why;
  if (as_pair(v[1], win) != 0)
    return "the window (or grid) size is not two positive ints";
  if (!l->reverse) {
    hw[0] = s[1];
    hw[1] = s[2];
  } else if (l->hw_pair ? as_pair(v[2], hw) != 0
                        : as_long(v[2], &hw[0]) != 0 || as_long(v[3], &hw[1]) != 0) {
    return "the image size is not two plain ints (a dimension kept dynamic)";
  }
  long a = win[0], b = win[1], c = s[3], h = hw[0], w = hw[1];
  if (h <= 0 || w <= 0 || h % a != 0 || w % b != 0)
    return "the window (or grid) size does not divide the image's";
  /* A block partition's windows per image, or a grid's strides. */
  long nh = h / a, nw = w / b;
  if (l->reverse && (s[1] != a || s[2] != b || (s[0] > 0 && s[0] % (nh * nw) != 0)))
    return "the windows are not (N, a, b, C) with N a multiple of the windows per image";
  /* The image into windows: the shape before each transpose... */
  long fwd[2][3] = {{h, nw, b * c}, {nw, nh, a * b * c}};
  if (l->grid) {
    long g[2][3] = {{h * b, nw, c}, {nw * a, nh, b * c}};
    memcpy(fwd, g, sizeof g);
  }
  if (!l->reverse) {
    set_shape(p, 0, fwd[0][0], fwd[0][1], fwd[0][2]);
    set_shape(p, 1, fwd[1][0], fwd[1][1], fwd[1][2]);
    set_shape(p, 2, a, b, c);
  } else {
    /* ...and back: each transpose's result, the last first, then the
     * image. */
    set_shape(p, 0, fwd[1][1], fwd[1][0], fwd[1][2]);
    set_shape(p, 1, fwd[0][1], fwd[0][0], fwd[0][2]);
    set_shape(p, 2, h, w, c);
  }
  return NULL;
}

/* x through p's reshapes and transposes.  New reference, or NULL with an
 * exception set. */
static PyObject *regroup(PyObject *x, plan *p)
{
  PyObject *y = Py_NewRef(x);
  for (int i = 0; y && i < 2; i++) {
    const long *s = p->shape[i];
    PyObject *r = PyObject_CallMethod(y, "reshape", "llll", s[0], s[1], s[2], s[3]);
    Py_DECREF(y);
    y = r ? PyObject_CallMethod(r, "transpose", "ii", 1, 2) : NULL;
    Py_XDECREF(r);
  }
  const long *s = p->shape[2];
  PyObject *out = y ? PyObject_CallMethod(y, "reshape", "llll", s[0], s[1], s[2], s[3]) : NULL;
  Py_XDECREF(y);
  return out;
}

static PyObject *rewrite(const layout *l, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[4] = {NULL, NULL, NULL, NULL};
  plan p;
  const char *why = unbound_call(origin, l->params, l->nparams, args, nargs, kwnames, v);
  if (!why)
    why = not_covered(l, v, &p);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return regroup(v[0], &p);
}

static PyObject *swin_partition_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
  (void)self;
  return rewrite(&swin_window_partition, args, nargs, kwnames);
}
TRW__PY_BUILTIN("timm.models.swin_transformer.window_partition", "ncnn", swin_partition_ncnn);

static PyObject *swin_reverse_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
  (void)self;
  return rewrite(&swin_window_reverse, args, nargs, kwnames);
}
TRW__PY_BUILTIN("timm.models.swin_transformer.window_reverse", "ncnn", swin_reverse_ncnn);

static PyObject *maxvit_partition_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
  (void)self;
  return rewrite(&maxvit_window_partition, args, nargs, kwnames);
}
TRW__PY_BUILTIN("timm.models.maxxvit.window_partition", "ncnn", maxvit_partition_ncnn);

static PyObject *maxvit_reverse_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
  (void)self;
  return rewrite(&maxvit_window_reverse, args, nargs, kwnames);
}
TRW__PY_BUILTIN("timm.models.maxxvit.window_reverse", "ncnn", maxvit_reverse_ncnn);

static PyObject *maxvit_grid_partition_ncnn(PyObject *self, PyObject *const *args,
                                            Py_ssize_t nargs, PyObject *kwnames)
{
  (void)self;
  return rewrite(&maxvit_grid_partition, args, nargs, kwnames);
}
TRW__PY_BUILTIN("timm.models.maxxvit.grid_partition", "ncnn", maxvit_grid_partition_ncnn);

static PyObject *maxvit_grid_reverse_ncnn(PyObject *self, PyObject *const *args,
                                          Py_ssize_t nargs, PyObject *kwnames)
{
  (void)self;
  return rewrite(&maxvit_grid_reverse, args, nargs, kwnames);
}
TRW__PY_BUILTIN("timm.models.maxxvit.grid_reverse", "ncnn", maxvit_grid_reverse_ncnn);
