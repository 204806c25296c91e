/*
 * attention_ncnn.c - nn.MultiheadAttention's self-attention for ncnn, a
 * rewriter of the Python function
 * torch.nn.functional.multi_head_attention_forward in C against the
 * CPython API.
 *
 * ncnn's blobs have at most 4 dims, and ncnn takes dim 0 for the batch.
 * torch 2.x's self-attention path projects q, k and v in one linear and
 * splits the result through a 5-dim tensor (_in_projection_packed:
 * unflatten(-1, (3, E)).unsqueeze(0).transpose(0, -2)), then puts the
 * heads into the batch dim, (N * H, L, hd).  pnnx converts such a graph,
 * ncnn does not load it (vit_b_16: "layer Tensor.reshape not exists").
 * The rewrite is the same attention with three projections and the heads
 * as a dim of their own, every tensor at most 4 dims and the batch kept in
 * dim 0:
 *
 *   x = query.transpose(0, 1)                         (N, L, E)
 *   q, k, v = linear(x, W_i, b_i)                     in_proj split in 3
 *             .reshape(N, L, H, hd).permute(0, 2, 1, 3)   (N, H, L, hd)
 *   o = softmax(q / sqrt(hd) @ k^T) @ v               (N, H, L, hd)
 *   o = o.permute(0, 2, 1, 3).reshape(N, L, E)
 *   return linear(o, W_out, b_out).transpose(0, 1), None
 *
 * The attention is written out rather than passed to
 * F.scaled_dot_product_attention: its exports compute the scale from the
 * query's size in the graph (Shape, which ncnn lacks), and torch 1.13 has
 * no such function.  L and N are read from query.shape as the original
 * reads them, so the ncnn size rewriters make them constants and a switched
 * off one leaves them to the tracer.
 *
 * It applies to the call nn.MultiheadAttention makes for self-attention
 * (torchvision's vit_b_16, most encoders): query, key and value the same
 * batched tensor, one packed in-projection, no bias_k/bias_v, no zero
 * attention, no masks, no dropout at work, no weights asked for, not
 * causal.  Any other call goes to the original, with the reason at info.
 */
#include <math.h>

#include "py_util.h"

/* multi_head_attention_forward's parameters, in order, in torch 1.13 (the
 * first 24) and 2.x (all 25). */
enum {
  A_QUERY, A_KEY, A_VALUE, A_EMBED_DIM, A_NUM_HEADS, A_IN_W, A_IN_B, A_BIAS_K, A_BIAS_V,
  A_ZERO_ATTN, A_DROPOUT_P, A_OUT_W, A_OUT_B, A_TRAINING, A_KEY_PADDING_MASK,
  A_NEED_WEIGHTS, A_ATTN_MASK, A_SEPARATE, A_Q_W, A_K_W, A_V_W, A_STATIC_K, A_STATIC_V,
  A_AVERAGE, A_IS_CAUSAL, A_COUNT
};

static const char *const mha_params[A_COUNT] = {
    "query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight",
    "in_proj_bias", "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight",
    "out_proj_bias", "training", "key_padding_mask", "need_weights", "attn_mask",
    "use_separate_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
    "static_k", "static_v", "average_attn_weights", "is_causal"};

/* The number of parameters of origin's signature when they are the first
 * ones of mha_params (24 on torch 1.13, 25 on 2.x), or 0 when origin is no
 * Python function with that signature (a later torch that changed it). */
static int origin_params(PyObject *origin)
{
  PyObject *code = PyObject_GetAttrString(origin, "__code__");
  PyObject *argc = code ? PyObject_GetAttrString(code, "co_argcount") : NULL;
  PyObject *kwonly = code ? PyObject_GetAttrString(code, "co_kwonlyargcount") : NULL;
  PyObject *names = code ? PyObject_GetAttrString(code, "co_varnames") : NULL;
  long n = argc && PyLong_Check(argc) ? PyLong_AsLong(argc) : 0;
  long k = kwonly && PyLong_Check(kwonly) ? PyLong_AsLong(kwonly) : -1;
  int ok = names && PyTuple_Check(names) && k == 0 && n >= A_COUNT - 1 && n <= A_COUNT &&
           PyTuple_GET_SIZE(names) >= n;
  for (long i = 0; ok && i < n; i++) {
    PyObject *s = PyTuple_GET_ITEM(names, i);
    const char *c = PyUnicode_Check(s) ? PyUnicode_AsUTF8(s) : NULL;
    ok = c && strcmp(c, mha_params[i]) == 0;
  }
  Py_XDECREF(code);
  Py_XDECREF(argc);
  Py_XDECREF(kwonly);
  Py_XDECREF(names);
  PyErr_Clear();
  return ok ? (int)n : 0;
}

/* Whether o is true (a default when o is NULL): -1 when it has no truth
 * value (a traced tensor would need one), with no exception kept. */
static int flag(PyObject *o, int dflt)
{
  if (!o)
    return dflt;
  int r = PyObject_IsTrue(o);
  if (r < 0)
    PyErr_Clear();
  return r;
}

/* Why the call is not the common self-attention the rewrite covers, or
 * NULL when it is.  v holds the bound arguments; *e and *h get the
 * embedding size and the number of heads. */
static const char *not_covered(PyObject *const *v, long *e, long *h)
{
  for (int i = 0; i <= A_OUT_B; i++) /* the parameters with no default */
    if (!v[i])
      return "a required argument is missing (the original raises)";
  if (v[A_KEY] != v[A_QUERY] || v[A_VALUE] != v[A_QUERY])
    return "not self-attention (query, key and value are not the same tensor)";
  if (flag(v[A_SEPARATE], 0) != 0)
    return "use_separate_proj_weight (separate q, k and v projections)";
  if (is_none(v[A_IN_W]))
    return "no in_proj_weight";
  if (!is_none(v[A_BIAS_K]) || !is_none(v[A_BIAS_V]))
    return "bias_k or bias_v is given";
  if (flag(v[A_ZERO_ATTN], 0) != 0)
    return "add_zero_attn";
  if (!is_none(v[A_ATTN_MASK]) || !is_none(v[A_KEY_PADDING_MASK]))
    return "an attn_mask or key_padding_mask is given";
  if (flag(v[A_NEED_WEIGHTS], 1) != 0)
    return "need_weights (the attention weights are asked for)";
  if (flag(v[A_IS_CAUSAL], 0) != 0)
    return "is_causal";
  if (!is_none(v[A_STATIC_K]) || !is_none(v[A_STATIC_V]))
    return "static_k or static_v is given";
  double p = PyFloat_AsDouble(v[A_DROPOUT_P]);
  if (p == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return "dropout_p is not a number";
  }
  if (p != 0.0 && flag(v[A_TRAINING], 1) != 0)
    return "dropout at work (training with dropout_p > 0)";
  PyObject *rank = PyObject_CallMethod(v[A_QUERY], "dim", NULL);
  long r = rank && PyLong_Check(rank) ? PyLong_AsLong(rank) : -1;
  Py_XDECREF(rank);
  PyErr_Clear();
  if (r != 3)
    return "the query is not batched (L, N, E)";
  *e = PyLong_Check(v[A_EMBED_DIM]) ? PyLong_AsLong(v[A_EMBED_DIM]) : -1;
  *h = PyLong_Check(v[A_NUM_HEADS]) ? PyLong_AsLong(v[A_NUM_HEADS]) : -1;
  PyErr_Clear();
  if (*e <= 0 || *h <= 0 || *e % *h != 0)
    return "embed_dim_to_check and num_heads are not ints with num_heads dividing it";
  if (untraced_size(v[A_QUERY], -1) != *e)
    return "the query's last size is not embed_dim_to_check (or is not static)";
  return NULL;
}

/* One head-split projection: linear(x, w, b).reshape(n, l, h, hd)
 * .permute(0, 2, 1, 3).  New reference, or NULL with an exception set. */
static PyObject *project(PyObject *linear, PyObject *x, PyObject *w, PyObject *b, PyObject *n,
                         PyObject *l, long h, long hd)
{
  PyObject *y = PyObject_CallFunctionObjArgs(linear, x, w, b, NULL);
  PyObject *heads = y ? PyObject_CallMethod(y, "reshape", "OOll", n, l, h, hd) : NULL;
  PyObject *out = heads ? PyObject_CallMethod(heads, "permute", "iiii", 0, 2, 1, 3) : NULL;
  Py_XDECREF(y);
  Py_XDECREF(heads);
  return out;
}

/* The rewrite (the file's comment).  New reference to (attn_output, None),
 * or NULL with an exception set. */
static PyObject *attend(PyObject *const *v, long e, long h)
{
  long hd = e / h;
  PyObject *query = v[A_QUERY];
  PyObject *fmod = PyImport_ImportModule("torch.nn.functional");
  PyObject *linear = fmod ? PyObject_GetAttrString(fmod, "linear") : NULL;
  PyObject *torch = linear ? PyImport_ImportModule("torch") : NULL;
  PyObject *matmul = torch ? PyObject_GetAttrString(torch, "matmul") : NULL;
  /* L and N as the original reads them: through Tensor.shape, which the
   * ncnn size rewriters answer with constants. */
  PyObject *shape = matmul ? PyObject_GetAttrString(query, "shape") : NULL;
  PyObject *l = shape ? PySequence_GetItem(shape, 0) : NULL;
  PyObject *n = l ? PySequence_GetItem(shape, 1) : NULL;
  PyObject *x = n ? PyObject_CallMethod(query, "transpose", "ii", 0, 1) : NULL;
  PyObject *w = x ? PyObject_CallMethod(v[A_IN_W], "chunk", "i", 3) : NULL;
  int biased = !is_none(v[A_IN_B]);
  PyObject *b = w && biased ? PyObject_CallMethod(v[A_IN_B], "chunk", "i", 3) : NULL;
  PyObject *qkv[3] = {NULL, NULL, NULL};
  PyObject *out = NULL;
  if (w && (b || !biased)) {
    if (!PyTuple_Check(w) || PyTuple_GET_SIZE(w) != 3 ||
        (b && (!PyTuple_Check(b) || PyTuple_GET_SIZE(b) != 3)))
      trw__py_raise("in_proj_weight or in_proj_bias does not chunk in 3");
    else
      for (int i = 0; i < 3; i++) {
        PyObject *bi = b ? PyTuple_GET_ITEM(b, i) : Py_None;
        if (!(qkv[i] = project(linear, x, PyTuple_GET_ITEM(w, i), bi, n, l, h, hd)))
          break;
      }
  }
  PyObject *scale = qkv[2] ? PyFloat_FromDouble(1.0 / sqrt((double)hd)) : NULL;
  PyObject *q = scale ? PyNumber_Multiply(qkv[0], scale) : NULL;
  PyObject *kt = q ? PyObject_CallMethod(qkv[1], "transpose", "ii", -2, -1) : NULL;
  PyObject *scores = kt ? PyObject_CallFunctionObjArgs(matmul, q, kt, NULL) : NULL;
  PyObject *weights = scores ? PyObject_CallMethod(scores, "softmax", "i", -1) : NULL;
  PyObject *o = weights ? PyObject_CallFunctionObjArgs(matmul, weights, qkv[2], NULL) : NULL;
  PyObject *o2 = o ? PyObject_CallMethod(o, "permute", "iiii", 0, 2, 1, 3) : NULL;
  PyObject *o3 = o2 ? PyObject_CallMethod(o2, "reshape", "OOl", n, l, e) : NULL;
  PyObject *ob = is_none(v[A_OUT_B]) ? Py_None : v[A_OUT_B];
  PyObject *y = o3 ? PyObject_CallFunctionObjArgs(linear, o3, v[A_OUT_W], ob, NULL) : NULL;
  PyObject *yt = y ? PyObject_CallMethod(y, "transpose", "ii", 0, 1) : NULL;
  out = yt ? PyTuple_Pack(2, yt, Py_None) : NULL;
  Py_XDECREF(yt);
  Py_XDECREF(y);
  Py_XDECREF(o3);
  Py_XDECREF(o2);
  Py_XDECREF(o);
  Py_XDECREF(weights);
  Py_XDECREF(scores);
  Py_XDECREF(kt);
  Py_XDECREF(q);
  Py_XDECREF(scale);
  for (int i = 0; i < 3; i++)
    Py_XDECREF(qkv[i]);
  Py_XDECREF(b);
  Py_XDECREF(w);
  Py_XDECREF(x);
  Py_XDECREF(n);
  Py_XDECREF(l);
  Py_XDECREF(shape);
  Py_XDECREF(matmul);
  Py_XDECREF(torch);
  Py_XDECREF(linear);
  Py_XDECREF(fmod);
  return out;
}

static PyObject *mha_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
  (void)self;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[A_COUNT];
  int nparams = origin_params(origin);
  long e = 0, h = 0;
  const char *why = NULL;
  if (!nparams)
    why = "the original's signature is not the one this rewriter knows";
  else if (bind_args(mha_params, nparams, args, nargs, kwnames, v) < 0)
    why = "arguments that do not bind to its signature (the original raises)";
  else {
    for (int i = nparams; i < A_COUNT; i++)
      v[i] = NULL;
    why = not_covered(v, &e, &h);
  }
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return attend(v, e, h);
}
TRW__PY_BUILTIN("torch.nn.functional.multi_head_attention_forward", "ncnn", mha_ncnn);
