/*
 * timm_attention_ncnn.c - timm's self-attention for ncnn, a rewriter of the
 * Python method timm.layers.attention.Attention.forward (the attention of
 * timm's ViT, DeiT, MobileViT and every model built from
 * vision_transformer.Block) in C against the CPython API.
 *
 * ncnn's blobs have at most 4 dims, and ncnn takes dim 0 for the batch.
 * timm splits its packed projection through a 5-dim tensor and unbinds it:
 *
 *   qkv = self.qkv(x).reshape(B, N, 3, H, hd).permute(2, 0, 3, 1, 4)
 *   q, k, v = qkv.unbind(0)
 *
 * then calls F.scaled_dot_product_attention (or writes it out when
 * fused_attn is off).  Under the TorchScript exporter pnnx's
 * fuse_multiheadattention folds that pattern; under torch.export the graph
 * differs, nothing folds, and ncnn refuses the file ("layer torch.unbind
 * not exists or registered").  The rewrite is the same attention with
 * three slices of the projection's output and the heads as a dim of their
 * own, every tensor at most 4 dims and the batch kept in dim 0:
 *
 *   y = self.qkv(x)                                     (B, N, 3A)
 *   q, k, v = y.narrow(2, i * A, A)                     i = 0, 1, 2
 *             .reshape(B, N, H, hd).permute(0, 2, 1, 3)     (B, H, N, hd)
 *   o = softmax((q * scale) @ k^T) @ v                  (B, H, N, hd)
 *   o = o.permute(0, 2, 1, 3).reshape(B, N, A)
 *   return self.proj_drop(self.proj(self.norm(o) * gate))
 *
 * with A = H * hd, the gate (timm's gated attention) only when there is
 * one.  The attention is written out rather than passed to
 * F.scaled_dot_product_attention for the reasons attention_ncnn.c gives
 * (its export computes the scale from the query's size, Shape, which ncnn
 * lacks; below opset 14 torch has no export of it).  scale is what the
 * forward uses: self.scale when fused_attn is off, SDPA's own
 * 1 / sqrt(hd) when it is on.  B and N are read from x.shape as the
 * original reads them, so the ncnn size rewriters make them constants
 * under the TorchScript tracer.
 *
 * It applies to the calls the forward covers without a mask: no attn_mask,
 * not is_causal, q_norm and k_norm nn.Identity (no qk_norm), attn_drop an
 * nn.Dropout not at work (eval, or p == 0), x of 3 dims.  Any other call,
 * or a forward whose signature is not (self, x[, attn_mask[, is_causal]]),
 * goes to the original, with the reason at info.
 */
#include "py_util.h"

/* Attention.forward's parameters, in order (timm 1.0: all four; older
 * releases stop after x or attn_mask). */
enum { T_SELF, T_X, T_MASK, T_CAUSAL, T_COUNT };

static const char *const forward_params[T_COUNT] = {"self", "x", "attn_mask", "is_causal"};

/* The number of parameters of origin's signature when they are the first
 * ones of forward_params, or 0 when origin is no Python function with such
 * a signature (a timm that changed it). */
static int origin_params(PyObject *origin)
{
  PyObject *code = PyObject_GetAttrString(origin, "__code__");
  PyObject *argc = code ? PyObject_GetAttrString(code, "co_argcount") : NULL;
  PyObject *kwonly = code ? PyObject_GetAttrString(code, "co_kwonlyargcount") : NULL;
  PyObject *names = code ? PyObject_GetAttrString(code, "co_varnames") : NULL;
  long n = argc && PyLong_Check(argc) ? PyLong_AsLong(argc) : 0;
  long k = kwonly && PyLong_Check(kwonly) ? PyLong_AsLong(kwonly) : -1;
  int ok = names && PyTuple_Check(names) && k == 0 && n >= 2 && n <= T_COUNT &&
           PyTuple_GET_SIZE(names) >= n;
  for (long i = 0; ok && i < n; i++) {
    PyObject *s = PyTuple_GET_ITEM(names, i);
    const char *c = PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
    ok = c && strcmp(c, forward_params[i]) == 0;
  }
  Py_XDECREF(code);
  Py_XDECREF(argc);
  Py_XDECREF(kwonly);
  Py_XDECREF(names);
  PyErr_Clear();
  return ok ? (int)n : 0;
}

/* What the rewrite needs from the module. */
typedef struct {
  long heads, head_dim, attn_dim;
  double scale;
} Config;

/* Why the call is not one the rewrite covers, or NULL when it is; fills
 * *c.  v holds the bound arguments. */
static const char *not_covered(PyObject *const *v, Config *c)
{
  PyObject *self = v[T_SELF];
  if (!self || !v[T_X])
    return "a required argument is missing (the original raises)";
  if (v[T_MASK] && v[T_MASK] != Py_None)
    return "an attn_mask is given";
  int causal = v[T_CAUSAL] ? PyObject_IsTrue(v[T_CAUSAL]) : 0;
  PyErr_Clear();
  if (causal != 0)
    return "is_causal";
  if (attr_is(self, "q_norm", "Identity") != 1 || attr_is(self, "k_norm", "Identity") != 1)
    return "qk_norm (q_norm or k_norm is not nn.Identity)";
  if (attr_is(self, "attn_drop", "Dropout") != 1)
    return "attn_drop is not an nn.Dropout";
  int drop = dropout_at_work(self, "attn_drop");
  if (drop != 0)
    return drop < 0 ? "attn_drop.p or training is not a plain value"
                    : "dropout at work (training with attn_drop.p > 0)";
  c->heads = long_attr(self, "num_heads");
  c->head_dim = long_attr(self, "head_dim");
  if (c->heads <= 0 || c->head_dim <= 0)
    return "num_heads or head_dim is not a positive int";
  c->attn_dim = c->heads * c->head_dim;
  /* timm before 1.0.10 has no attn_dim and reshapes the output to x's C. */
  long attn_dim = long_attr(self, "attn_dim");
  if (attn_dim >= 0 && attn_dim != c->attn_dim)
    return "attn_dim is not num_heads * head_dim";
  int fused = flag_attr(self, "fused_attn", 0);
  if (fused < 0)
    return "fused_attn has no truth value";
  /* SDPA scales by 1 / sqrt(q.size(-1)); the written-out path by
   * self.scale, which a model may have set to something else. */
  c->scale = fused ? 1.0 / sqrt((double)c->head_dim) : float_attr(self, "scale");
  if (isnan(c->scale))
    return "scale is not a number";
  PyObject *rank = PyObject_CallMethod(v[T_X], "dim", NULL);
  long r = rank && PyLong_Check(rank) ? PyLong_AsLong(rank) : -1;
  Py_XDECREF(rank);
  PyErr_Clear();
  if (r != 3)
    return "x is not (B, N, C)";
  if (attn_dim < 0 && untraced_size(v[T_X], 2) != c->attn_dim)
    return "x's last size is not num_heads * head_dim (or is not static)";
  return NULL;
}

/* self.<name>(x); for an optional submodule (one an older timm does not
 * have) a new reference to x when self has no such attribute or it is
 * None.  NULL with an exception set (a missing qkv or proj raises, as in
 * the original). */
static PyObject *call_sub(PyObject *self, const char *name, PyObject *x, int optional)
{
  PyObject *m = PyObject_GetAttrString(self, name);
  if (!m) {
    if (!optional)
      return NULL;
    PyErr_Clear();
    return Py_NewRef(x);
  }
  PyObject *r = m == Py_None ? Py_NewRef(x) : PyObject_CallOneArg(m, x);
  Py_DECREF(m);
  return r;
}

/* One head-split third of the projection: y.narrow(2, i * a, a)
 * .reshape(b, n, h, hd).permute(0, 2, 1, 3).  New reference, or NULL with
 * an exception set. */
static PyObject *third(PyObject *y, int i, const Config *c, PyObject *b, PyObject *n)
{
  PyObject *s = PyObject_CallMethod(y, "narrow", "ill", 2, i * c->attn_dim, c->attn_dim);
  PyObject *heads =
      s ? PyObject_CallMethod(s, "reshape", "OOll", b, n, c->heads, c->head_dim) : NULL;
  PyObject *out = heads ? PyObject_CallMethod(heads, "permute", "iiii", 0, 2, 1, 3) : NULL;
  Py_XDECREF(s);
  Py_XDECREF(heads);
  return out;
}

/* The rewrite (the file's comment).  New reference, or NULL with an
 * exception set. */
static PyObject *attend(PyObject *const *v, const Config *c)
{
  PyObject *self = v[T_SELF], *x = v[T_X];
  /* B and N as the original reads them: through Tensor.shape, which the
   * ncnn size rewriters answer with constants. */
  PyObject *shape = PyObject_GetAttrString(x, "shape");
  PyObject *b = shape ? PySequence_GetItem(shape, 0) : NULL;
  PyObject *n = b ? PySequence_GetItem(shape, 1) : NULL;
  PyObject *gate_m = n ? PyObject_GetAttrString(self, "gate") : NULL;
  if (n && !gate_m) /* timm before gated attention */
    PyErr_Clear();
  PyObject *g = gate_m && gate_m != Py_None ? PyObject_CallOneArg(gate_m, x) : NULL;
  PyObject *gate = g ? PyObject_CallMethod(g, "sigmoid", NULL) : NULL;
  int gated = gate_m && gate_m != Py_None;
  PyObject *qkv = n && (gate || !gated) ? call_sub(self, "qkv", x, 0) : NULL;
  PyObject *q = qkv ? third(qkv, 0, c, b, n) : NULL;
  PyObject *k = q ? third(qkv, 1, c, b, n) : NULL;
  PyObject *val = k ? third(qkv, 2, c, b, n) : NULL;
  PyObject *scale = val ? PyFloat_FromDouble(c->scale) : NULL;
  PyObject *qs = scale ? PyNumber_Multiply(q, scale) : NULL;
  PyObject *kt = qs ? PyObject_CallMethod(k, "transpose", "ii", -2, -1) : NULL;
  PyObject *scores = kt ? PyNumber_MatrixMultiply(qs, kt) : NULL;
  PyObject *weights = scores ? PyObject_CallMethod(scores, "softmax", "i", -1) : NULL;
  PyObject *o = weights ? PyNumber_MatrixMultiply(weights, val) : NULL;
  PyObject *o2 = o ? PyObject_CallMethod(o, "permute", "iiii", 0, 2, 1, 3) : NULL;
  PyObject *o3 = o2 ? PyObject_CallMethod(o2, "reshape", "OOl", b, n, c->attn_dim) : NULL;
  PyObject *normed = o3 ? call_sub(self, "norm", o3, 1) : NULL;
  PyObject *o4 = normed && gated ? PyNumber_Multiply(normed, gate) : Py_XNewRef(normed);
  PyObject *y = o4 ? call_sub(self, "proj", o4, 0) : NULL;
  PyObject *out = y ? call_sub(self, "proj_drop", y, 1) : NULL;
  Py_XDECREF(y);
  Py_XDECREF(o4);
  Py_XDECREF(normed);
  Py_XDECREF(o3);
  Py_XDECREF(o2);
  Py_XDECREF(o);
  Py_XDECREF(weights);
  Py_XDECREF(scores);
  Py_XDECREF(kt);
  Py_XDECREF(qs);
  Py_XDECREF(scale);
  Py_XDECREF(val);
  Py_XDECREF(k);
  Py_XDECREF(q);
  Py_XDECREF(qkv);
  Py_XDECREF(gate);
  Py_XDECREF(g);
  Py_XDECREF(gate_m);
  Py_XDECREF(n);
  Py_XDECREF(b);
  Py_XDECREF(shape);
  return out;
}

static PyObject *timm_attention_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
  (void)self;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[T_COUNT];
  int nparams = origin_params(origin);
  Config c = {0};
  const char *why = NULL;
  if (!nparams)
    why = "the original's signature is not the one this rewriter knows";
  else if (bind_args(forward_params, nparams, args, nargs, kwnames, v) < 0)
    why = "arguments that do not bind to its signature (the original raises)";
  else {
    for (int i = nparams; i < T_COUNT; i++)
      v[i] = NULL;
    why = not_covered(v, &c);
  }
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return attend(v, &c);
}
TRW__PY_BUILTIN("timm.layers.attention.Attention.forward", "ncnn", timm_attention_ncnn);
