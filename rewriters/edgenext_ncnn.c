/*
 * edgenext_ncnn.c - timm's EdgeNeXt cross-covariance attention for ncnn, a
 * rewriter of the Python method
 * timm.models.edgenext.CrossCovarianceAttn.forward in C against the
 * CPython API.
 *
 * XCA attends across channels, not tokens: per head an (hd, hd) map of
 * the channels' correlations over the N tokens.  timm splits its packed
 * projection through a 5-dim tensor and unbinds it:
 *
 *   qkv = self.qkv(x).reshape(B, N, 3, H, -1).permute(2, 0, 3, 4, 1)
 *   q, k, v = qkv.unbind(0)                             (B, H, hd, N)
 *   attn = normalize(q, dim=-1) @ normalize(k, dim=-1)^T * self.temperature
 *   o = self.attn_drop(attn.softmax(-1)) @ v
 *   return self.proj_drop(self.proj(o.permute(0, 3, 1, 2).reshape(B, N, C)))
 *
 * ncnn's blobs have at most 4 dims.  Under the TorchScript exporter pnnx
 * folds the 5-dim reshape and ncnn runs the file; under torch.export
 * nothing folds it and ncnn refuses the file ("layer torch.unbind not
 * exists or registered").  The rewrite is the same attention with three
 * slices of the projection's output, every tensor at most 4 dims and the
 * batch kept in dim 0:
 *
 *   y = self.qkv(x)                                     (B, N, 3C)
 *   q, k, v = y.narrow(2, i * C, C)                     i = 0, 1, 2
 *             .reshape(B, N, H, hd).permute(0, 2, 3, 1)     (B, H, hd, N)
 *
 * q and k are normalised over the tokens before the head split, on the
 * (B, N, C) slice: s / s.norm(2, dim=1, keepdim=True).clamp_min(1e-12),
 * F.normalize's arithmetic, one norm per channel over the N tokens as the
 * original's normalize(q, dim=-1) over (B, H, hd, N).  A norm of 3 dims is
 * one the ncnn reduction rewriter (reduce_ncnn.c) writes as ncnn takes it
 * at opset 18; the original's, of 4 dims, it cannot lift, and ncnn gets a
 * ReduceL2 with one axis as an input, which it computes in the wrong
 * shape.  From there the original's steps: temperature, softmax,
 * dropouts and projection.  B and N are read from x.shape as the original
 * reads them, so the ncnn size rewriters make them constants under the
 * TorchScript tracer.
 *
 * It applies to forward(self, x) with x of 3 dims whose channel count C
 * is static, num_heads a positive int that divides C, and qkv a linear
 * of 3C outputs (what the original's reshapes need).  Any other call, or
 * a forward of another signature, goes to the original, with the reason
 * at info.
 */
#include "py_util.h"

enum { X_SELF, X_X, X_COUNT };

static const char *const forward_params[X_COUNT] = {"self", "x"};

/* Why the call is not one the rewrite covers, or NULL when it is; sets
 * *c (channels) and *h (heads). */
static const char *not_covered(PyObject *const *v, long *c, long *h)
{
  PyObject *self = v[X_SELF], *x = v[X_X];
  if (!self || !x)
    return "a required argument is missing (the original raises)";
  if (rank_of(x) != 3)
    return "x is not (B, N, C)";
  *c = untraced_size(x, 2);
  if (*c <= 0)
    return "x's channel count is not static";
  *h = long_attr(self, "num_heads");
  if (*h <= 0 || *c % *h != 0)
    return "num_heads is not a positive int that divides x's channels";
  PyObject *qkv = PyObject_GetAttrString(self, "qkv");
  long out = qkv ? long_attr(qkv, "out_features") : -1;
  Py_XDECREF(qkv);
  PyErr_Clear();
  if (out != 3 * *c)
    return "qkv is not a linear of 3 x C outputs";
  return NULL;
}

/* The channels of s (B, N, C) normalised over the tokens, F.normalize's
 * way: s / s.norm(2, dim=1, keepdim=True).clamp_min(1e-12).  New
 * reference, or NULL with an exception set. */
static PyObject *over_tokens(PyObject *s)
{
  PyObject *norm = PyObject_CallMethod(s, "norm", "dlO", 2.0, 1L, Py_True);
  PyObject *denom = norm ? PyObject_CallMethod(norm, "clamp_min", "d", 1e-12) : NULL;
  PyObject *r = denom ? PyNumber_TrueDivide(s, denom) : NULL;
  Py_XDECREF(denom);
  Py_XDECREF(norm);
  return r;
}

/* One head-split third of the projection, (B, H, hd, N):
 * y.narrow(2, i * c, c), normalised over the tokens when norm is set,
 * .reshape(b, n, h, c / h).permute(0, 2, 3, 1).  New reference, or NULL
 * with an exception set. */
static PyObject *third(PyObject *y, int i, int norm, long c, long h, PyObject *b, PyObject *n)
{
  PyObject *s = PyObject_CallMethod(y, "narrow", "ill", 2, i * c, c);
  PyObject *sn = s && norm ? over_tokens(s) : Py_XNewRef(s);
  PyObject *heads = sn ? PyObject_CallMethod(sn, "reshape", "OOll", b, n, h, c / h) : NULL;
  PyObject *out = heads ? PyObject_CallMethod(heads, "permute", "iiii", 0, 2, 3, 1) : NULL;
  Py_XDECREF(s);
  Py_XDECREF(sn);
  Py_XDECREF(heads);
  return out;
}

/* The rewrite (the file's comment).  New reference, or NULL with an
 * exception set. */
static PyObject *attend(PyObject *self, PyObject *x, long c, long h)
{
  PyObject *shape = PyObject_GetAttrString(x, "shape");
  PyObject *b = shape ? PySequence_GetItem(shape, 0) : NULL;
  PyObject *n = b ? PySequence_GetItem(shape, 1) : NULL;
  PyObject *y = n ? call_submodule(self, "qkv", Py_NewRef(x)) : NULL;
  PyObject *qn = y ? third(y, 0, 1, c, h, b, n) : NULL;
  PyObject *kn = qn ? third(y, 1, 1, c, h, b, n) : NULL;
  PyObject *v = kn ? third(y, 2, 0, c, h, b, n) : NULL;
  PyObject *kt = v ? PyObject_CallMethod(kn, "transpose", "ii", -2, -1) : NULL;
  PyObject *corr = kt ? PyNumber_MatrixMultiply(qn, kt) : NULL;
  PyObject *temp = corr ? PyObject_GetAttrString(self, "temperature") : NULL;
  PyObject *attn = temp ? PyNumber_Multiply(corr, temp) : NULL;
  PyObject *w = call_submodule(self, "attn_drop",
                        attn ? PyObject_CallMethod(attn, "softmax", "i", -1) : NULL);
  PyObject *o = w ? PyNumber_MatrixMultiply(w, v) : NULL;
  PyObject *o2 = o ? PyObject_CallMethod(o, "permute", "iiii", 0, 3, 1, 2) : NULL;
  PyObject *o3 = o2 ? PyObject_CallMethod(o2, "reshape", "OOl", b, n, c) : NULL;
  PyObject *out = call_submodule(self, "proj_drop", call_submodule(self, "proj", o3));
  Py_XDECREF(o2);
  Py_XDECREF(o);
  Py_XDECREF(w);
  Py_XDECREF(attn);
  Py_XDECREF(temp);
  Py_XDECREF(corr);
  Py_XDECREF(kt);
  Py_XDECREF(kn);
  Py_XDECREF(qn);
  Py_XDECREF(v);
  Py_XDECREF(y);
  Py_XDECREF(n);
  Py_XDECREF(b);
  Py_XDECREF(shape);
  return out;
}

static PyObject *xca_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
  (void)self;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[X_COUNT];
  long c = 0, h = 0;
  const char *why = unbound_call(origin, forward_params, X_COUNT, args, nargs, kwnames, v);
  if (!why)
    why = not_covered(v, &c, &h);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return attend(v[X_SELF], v[X_X], c, h);
}
TRW__PY_BUILTIN("timm.models.edgenext.CrossCovarianceAttn.forward", "ncnn", xca_ncnn);
