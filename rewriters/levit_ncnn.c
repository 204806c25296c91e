/*
 * levit_ncnn.c - timm's LeViT Downsample for ncnn, a rewriter of the
 * Python method timm.models.levit.Downsample.forward in C against the
 * CPython API.
 *
 * Without a pool, LeViT's attention downsampling keeps every stride-th
 * token of its (B, H, W, C) grid: x.view(B, H, W, C)[:, ::s, ::s].  That
 * exports as two Slices of step s, which pnnx leaves as Tensor.slice
 * ("slice with step 2 is not supported": ncnn's Crop takes step 1 only),
 * and ncnn refuses the model ("layer Tensor.slice not exists or
 * registered").  A pooling of kernel 1 and stride s picks the same
 * elements (floor((H - 1) / s) + 1 of them along each axis, as ::s does),
 * and ncnn has it (Pooling):
 *
 *   y = x.view(B, H, W, C).permute(0, 3, 1, 2)          (B, C, H, W)
 *   y = avg_pool2d(y, kernel_size=1, stride=s)          (B, C, H', W')
 *   return y.permute(0, 2, 3, 1).reshape(B, -1, C)      (B, H' * W', C)
 *
 * B, N and C are read from x.shape as the original reads them, so the
 * ncnn size rewriters make them constants.  A Downsample with a pool
 * (use_pool=True, already a pooling), a stride or resolution that is not
 * ints, or an input that is not 3-dim goes to the original, with the
 * reason at info.
 */
#include "py_util.h"

/* self.resolution as two positive ints; 0 or -1. */
static int resolution_of(PyObject *self, long res[2])
{
  PyObject *r = PyObject_GetAttrString(self, "resolution");
  PyObject *seq = r ? PySequence_Fast(r, "resolution") : NULL;
  int ok = seq && PySequence_Fast_GET_SIZE(seq) == 2;
  for (int i = 0; ok && i < 2; i++) {
    PyObject *v = PySequence_Fast_GET_ITEM(seq, i);
    res[i] = PyLong_Check(v) ? PyLong_AsLong(v) : -1;
    ok = res[i] > 0;
  }
  Py_XDECREF(seq);
  Py_XDECREF(r);
  PyErr_Clear();
  return ok ? 0 : -1;
}

/* The rewrite of the comment above; new reference, or NULL with an
 * exception set. */
static PyObject *pooled(PyObject *x, long stride, const long res[2])
{
  PyObject *shape = PyObject_GetAttrString(x, "shape");
  PyObject *seq = shape ? PySequence_Fast(shape, "shape") : NULL;
  PyObject *out = NULL;

  Py_XDECREF(shape);
  if (!seq)
    return NULL;
  PyObject *b = PySequence_Fast_GET_ITEM(seq, 0);
  PyObject *c = PySequence_Fast_GET_ITEM(seq, 2);
  PyObject *grid = PyObject_CallMethod(x, "view", "OllO", b, res[0], res[1], c);
  PyObject *nchw = grid ? PyObject_CallMethod(grid, "permute", "iiii", 0, 3, 1, 2) : NULL;
  PyObject *fn = nchw ? PyImport_ImportModule("torch.nn.functional") : NULL;
  PyObject *pool = fn ? PyObject_GetAttrString(fn, "avg_pool2d") : NULL;
  PyObject *args = pool ? Py_BuildValue("(O)", nchw) : NULL;
  PyObject *kw = args ? Py_BuildValue("{s:i,s:l}", "kernel_size", 1, "stride", stride) : NULL;
  PyObject *down = kw ? PyObject_Call(pool, args, kw) : NULL;
  PyObject *nhwc = down ? PyObject_CallMethod(down, "permute", "iiii", 0, 2, 3, 1) : NULL;
  if (nhwc)
    out = PyObject_CallMethod(nhwc, "reshape", "OiO", b, -1, c);
  Py_XDECREF(nhwc);
  Py_XDECREF(down);
  Py_XDECREF(kw);
  Py_XDECREF(args);
  Py_XDECREF(pool);
  Py_XDECREF(fn);
  Py_XDECREF(nchw);
  Py_XDECREF(grid);
  Py_DECREF(seq);
  return out;
}

static PyObject *downsample_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
  (void)self;
  static const char *const names[] = {"self", "x"};
  PyObject *v[2];
  PyObject *origin = origin_of_context();
  const char *why = NULL;
  long stride = -1, res[2] = {0, 0};

  if (!origin)
    return NULL;
  if (bind_args(names, 2, args, nargs, kwnames, v) != 0 || !v[0] || !v[1]) {
    why = "not called as forward(x)";
  } else {
    PyObject *pool = PyObject_GetAttrString(v[0], "pool");
    long rank = rank_of(v[1]);
    int has_pool = !pool || pool != Py_None;
    Py_XDECREF(pool);
    PyErr_Clear();
    stride = long_attr(v[0], "stride");
    if (has_pool)
      why = "a Downsample with a pool (use_pool=True) is a pooling already";
    else if (stride < 1 || resolution_of(v[0], res) != 0)
      why = "stride or resolution is not positive ints";
    else if (rank != 3)
      why = "the input is not (B, N, C)";
  }
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return pooled(v[1], stride, res);
}
TRW__PY_BUILTIN("timm.models.levit.Downsample.forward", "ncnn", downsample_ncnn);
