/*
 * levit_ncnn.c - timm's LeViT for ncnn: rewriters of the Python methods
 * timm.models.levit.Downsample.forward and LinearNorm.forward in C against
 * the CPython API.
 *
 * Downsample.  Without a pool, LeViT's attention downsampling keeps every
 * stride-th token of its (B, H, W, C) grid: x.view(B, H, W, C)[:, ::s, ::s].
 * That exports as two Slices of step s, which pnnx leaves as Tensor.slice
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
 * ints, an input that is not 3-dim or a forward of another signature
 * goes to the original, with the reason at info.
 *
 * LinearNorm.  Every projection of LeViT's attention and MLP is a linear
 * and a BatchNorm1d over the tokens of the whole batch:
 *
 *   self.bn(self.linear(x).flatten(0, 1)).reshape_as(x)     x (B, N, C)
 *
 * pnnx (ncnn's converter) gives each blob a batch axis, and for the
 * flattened (B * N, C') it takes what BatchNorm1d calls its batch, the
 * B * N rows: back through the reshape, the tokens become ncnn's batch.
 * That holds while every tensor a layer meets has the same N; LeViT's
 * attention downsampling meets the queries of the subsampled grid with
 * the keys of the full one, and once the last stage has one token (a
 * 64x64 input) the batches no longer match and ncnn stops at the next
 * reshape ("ncnn's extractor failed" at the queries' view).  In
 * inference the norm is an affine map per output channel, which the
 * linear can carry (timm's own LinearNorm.fuse does the same for
 * deployment):
 *
 *   s = bn.weight / sqrt(bn.running_var + bn.eps)
 *   return linear(x, self.linear.weight * s[:, None],
 *                 (self.linear.bias - bn.running_mean) * s + bn.bias)
 *
 * one MatMul and an Add on (B, N, C), nothing flattened.  Both exporters
 * fold the weights' arithmetic into the two initializers.  It applies to
 * forward(self, x) with x of 3 dims, self.linear a torch.nn.Linear and
 * self.bn a torch.nn.BatchNorm1d that is not training and keeps running
 * statistics (otherwise it normalises by the batch's, which no fixed map
 * is); any other call, or a forward of another signature, goes to the
 * original, with the reason at info.  The
 * two submodules' own hooks do not run for a rewritten call.
 */
#include "py_util.h"

/* Both methods are forward(self, x). */
enum { ARG_SELF, ARG_X, ARG_COUNT };

static const char *const forward_params[ARG_COUNT] = {"self", "x"};

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

/* Why the bound call v is not one the pooling covers, or NULL when it is;
 * sets *stride and res. */
static const char *downsample_not_covered(PyObject *const *v, long *stride, long res[2])
{
  PyObject *self = v[ARG_SELF], *x = v[ARG_X];
  if (!self || !x)
    return "a required argument is missing (the original raises)";
  PyObject *pool = PyObject_GetAttrString(self, "pool");
  int has_pool = !pool || pool != Py_None;
  Py_XDECREF(pool);
  PyErr_Clear();
  if (has_pool)
    return "a Downsample with a pool (use_pool=True) is a pooling already";
  *stride = long_attr(self, "stride");
  if (*stride < 1 || resolution_of(self, res) != 0)
    return "stride or resolution is not positive ints";
  if (rank_of(x) != 3)
    return "the input is not (B, N, C)";
  return NULL;
}

static PyObject *downsample_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
  (void)self;
  PyObject *v[ARG_COUNT];
  long stride = -1, res[2] = {0, 0};
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  const char *why = unbound_call(origin, forward_params, ARG_COUNT, args, nargs, kwnames, v);
  if (!why)
    why = downsample_not_covered(v, &stride, res);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return pooled(v[ARG_X], stride, res);
}
TRW__PY_BUILTIN("timm.models.levit.Downsample.forward", "ncnn", downsample_ncnn);

/* --- LinearNorm ---------------------------------------------------------- */

/* Why the call is not one the fold covers, or NULL when it is. */
static const char *linear_norm_not_covered(PyObject *const *v)
{
  PyObject *self = v[ARG_SELF], *x = v[ARG_X];
  if (!self || !x)
    return "a required argument is missing (the original raises)";
  if (rank_of(x) != 3)
    return "x is not (B, N, C)";
  if (attr_is(self, "linear", "Linear") != 1)
    return "self.linear is no torch.nn.Linear";
  if (attr_is(self, "bn", "BatchNorm1d") != 1)
    return "self.bn is no torch.nn.BatchNorm1d";
  PyObject *bn = PyObject_GetAttrString(self, "bn");
  PyObject *mean = bn ? PyObject_GetAttrString(bn, "running_mean") : NULL;
  PyObject *var = mean ? PyObject_GetAttrString(bn, "running_var") : NULL;
  int training = bn ? flag_attr(bn, "training", -1) : -1;
  int stats = var && !is_none(mean) && !is_none(var);
  double eps = bn ? float_attr(bn, "eps") : NAN;
  Py_XDECREF(var);
  Py_XDECREF(mean);
  Py_XDECREF(bn);
  PyErr_Clear();
  if (!stats)
    return "self.bn keeps no running statistics (it normalises by the batch's)";
  if (training != 0)
    return "self.bn is training (it normalises by the batch's statistics)";
  if (isnan(eps))
    return "self.bn.eps is no number";
  return NULL;
}

/* op(a, b), a stolen (NULL passes through), b borrowed. */
static PyObject *then(PyObject *(*op)(PyObject *, PyObject *), PyObject *a, PyObject *b)
{
  PyObject *r = a ? op(a, b) : NULL;
  Py_XDECREF(a);
  return r;
}

/* The fold of the comment above; new reference, or NULL with an
 * exception set. */
static PyObject *folded(PyObject *self, PyObject *x)
{
  PyObject *lin = PyObject_GetAttrString(self, "linear");
  PyObject *bn = lin ? PyObject_GetAttrString(self, "bn") : NULL;
  PyObject *w = bn ? PyObject_GetAttrString(lin, "weight") : NULL;
  PyObject *b = w ? PyObject_GetAttrString(lin, "bias") : NULL;
  PyObject *mean = b ? PyObject_GetAttrString(bn, "running_mean") : NULL;
  PyObject *var = mean ? PyObject_GetAttrString(bn, "running_var") : NULL;
  PyObject *gamma = var ? PyObject_GetAttrString(bn, "weight") : NULL;
  PyObject *beta = gamma ? PyObject_GetAttrString(bn, "bias") : NULL;
  PyObject *eps = beta ? PyObject_GetAttrString(bn, "eps") : NULL;
  PyObject *fn = eps ? PyImport_ImportModule("torch.nn.functional") : NULL;
  PyObject *out = NULL;

  /* s = rsqrt(var + eps) * gamma; shift = (b - mean) * s + beta */
  PyObject *ve = fn ? PyNumber_Add(var, eps) : NULL;
  PyObject *s = ve ? PyObject_CallMethod(ve, "rsqrt", NULL) : NULL;
  Py_XDECREF(ve);
  if (s && !is_none(gamma))
    s = then(PyNumber_Multiply, s, gamma);
  PyObject *col = s ? PyObject_CallMethod(s, "unsqueeze", "i", 1) : NULL;
  PyObject *weight = col ? PyNumber_Multiply(w, col) : NULL;
  PyObject *shift = weight ? (is_none(b) ? PyNumber_Negative(mean)
                                         : PyNumber_Subtract(b, mean)) : NULL;
  shift = then(PyNumber_Multiply, shift, s);
  if (shift && !is_none(beta))
    shift = then(PyNumber_Add, shift, beta);
  if (shift)
    out = PyObject_CallMethod(fn, "linear", "OOO", x, weight, shift);
  Py_XDECREF(shift);
  Py_XDECREF(weight);
  Py_XDECREF(col);
  Py_XDECREF(s);
  Py_XDECREF(fn);
  Py_XDECREF(eps);
  Py_XDECREF(beta);
  Py_XDECREF(gamma);
  Py_XDECREF(var);
  Py_XDECREF(mean);
  Py_XDECREF(b);
  Py_XDECREF(w);
  Py_XDECREF(bn);
  Py_XDECREF(lin);
  return out;
}

static PyObject *linear_norm_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
  (void)self;
  PyObject *v[ARG_COUNT];
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  const char *why = unbound_call(origin, forward_params, ARG_COUNT, args, nargs, kwnames, v);
  if (!why)
    why = linear_norm_not_covered(v);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return folded(v[ARG_SELF], v[ARG_X]);
}
TRW__PY_BUILTIN("timm.models.levit.LinearNorm.forward", "ncnn", linear_norm_ncnn);
