/*
 * swin_ncnn.c - timm's Swin window attention and patch merging for ncnn,
 * rewriters of the methods timm.models.swin_transformer.WindowAttention
 * .forward and PatchMerging.forward, in C against the CPython API.
 *
 * ncnn's blobs have at most 4 dims, and ncnn takes dim 0 for the batch.
 * With the window partitions rewritten (window_ncnn.c), two 5- and 6-dim
 * tensors keep ncnn from loading timm's Swin ("layer Tensor.reshape not
 * exists or registered"):
 *
 *   WindowAttention: qkv(x).reshape(B_, N, 3, heads, hd).permute(2, 0, 3,
 *   1, 4).unbind(0), and with a shift mask attn.view(-1, nW, heads, N, N)
 *   (or, on the fused path, mask.view(1, nW, 1, N, N).expand(...));
 *
 *   PatchMerging: x.reshape(B, H/2, 2, W/2, 2, C).permute(0, 1, 3, 4, 2, 5)
 *   .flatten(3).
 *
 * The attention is rewritten as three slices of the qkv linear's output,
 * the heads as a dim of their own, every tensor at most 4 dims with the
 * windows in dim 0 (as the window partitions hand them over):
 *
 *   q, k, v = qkv(x).chunk(3, -1) .reshape(-1, N, heads, hd)
 *             .permute(0, 2, 1, 3)                      (B_, heads, N, hd)
 *   attn = (q * scale) @ k^T + rel_pos_bias             (B_, heads, N, N)
 *   with a mask (nW, N, N):
 *     attn = (attn.reshape(-1, nW, heads, N*N) + mask.reshape(1, nW, 1, N*N))
 *            .reshape(-1, heads, N, N)
 *   x = softmax(attn) @ v, .transpose(1, 2).reshape(-1, N, heads*hd)
 *   return proj_drop(proj(x))
 *
 * The mask's reshape puts the images alone in dim 0 (B_ is images x nW),
 * as timm's 5-dim view does with one more dim.  timm's fused path
 * (fused_attn, off unless TIMM_FUSED_ATTN asks for experimental ones)
 * computes the same with scaled_dot_product_attention, whose scale is
 * 1/sqrt(hd); the rewrite uses that scale there, and self.scale on the
 * other path, as timm does.  It is written out rather than passed to
 * scaled_dot_product_attention, whose exports compute the scale from the
 * query's size in the graph (Shape, which ncnn lacks).
 *
 * The patch merging reaches timm's order of channels (w-offset, h-offset,
 * C) in two permutations of three neighbouring groups of dims, each a
 * reshape to 4 dims and a transpose(2, 3), with the batch alone in dim 0
 * (written -1):
 *
 *   x.reshape(-1, H/2, 2, W*C).transpose(2, 3)           (B, H/2, W*C, 2)
 *    .reshape(-1, H/2*W, C, 2).transpose(2, 3)           (B, H/2*W, 2, C)
 *    .reshape(-1, H/2, W/2, 4*C)
 *
 * then timm's norm and reduction.  Odd sizes are padded first, as timm
 * does.
 *
 * Sizes are read as ints with the tracer looking away, so the reshapes'
 * targets but dim 0 are constants, as pnnx needs them.  A call that does
 * not fit goes to the original, with the reason at info: arguments that do
 * not bind to the signature, a tensor of another rank, a size but dim 0's
 * that is not a plain int (kept dynamic by torch.export), sizes that do
 * not divide as timm's views need, a mask that is not (nW, N, N) with nW
 * dividing the windows, dropout at work (training with a dropout
 * probability), or a module without the attributes this timm's has (a
 * later timm).
 */
#include <math.h>

#include "py_util.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

/* t's sizes, when t is a tensor of rank n whose sizes but dim 0's are
 * plain positive ints: out[0] is dim 0's (-1 when it is not a plain int).
 * NULL, or the reason it is not. */
static const char *sizes_of(PyObject *t, int n, long *out, const char *rank_why)
{
  if (rank_of(t) != n)
    return rank_why;
  for (int i = 0; i < n; i++) {
    out[i] = untraced_size(t, i);
    if (i > 0 && out[i] < 0)
      return "a size that is not a plain int (a dimension kept dynamic)";
    if (out[i] == 0)
      return "an empty tensor";
  }
  return NULL;
}

/* t.reshape(-1, d1, d2, d3).  Steals t (NULL passes through).  New
 * reference, or NULL with an exception set. */
static PyObject *reshape4(PyObject *t, long d1, long d2, long d3)
{
  PyObject *r = t ? PyObject_CallMethod(t, "reshape", "llll", -1L, d1, d2, d3) : NULL;
  Py_XDECREF(t);
  return r;
}

/* t.transpose(a, b).  Steals t (NULL passes through). */
static PyObject *transpose(PyObject *t, int a, int b)
{
  PyObject *r = t ? PyObject_CallMethod(t, "transpose", "ii", a, b) : NULL;
  Py_XDECREF(t);
  return r;
}

/* ------------------------------------------------------------------------ */
/* WindowAttention.forward                                                   */

static const char *const attn_params[] = {"self", "x", "mask"};

typedef struct {
  long n, heads, hd, nw; /* nw: the mask's windows, 0 without a mask */
  double scale;
} attn_plan;

/* Why the call is not one the rewrite covers, or NULL with *p filled. */
static const char *attn_not_covered(PyObject *const *v, attn_plan *p)
{
  PyObject *self = v[0], *x = v[1], *mask = v[2] && v[2] != Py_None ? v[2] : NULL;
  if (!self || !x)
    return "a required argument is missing (the original raises)";
  long s[3];
  const char *why = sizes_of(x, 3, s, "x is not a tensor of 3 dims (B_, N, C)");
  if (why)
    return why;
  p->n = s[1];
  p->heads = long_attr(self, "num_heads");
  if (p->heads <= 0)
    return "the module has no int num_heads";
  PyObject *qkv = PyObject_GetAttrString(self, "qkv");
  long out = qkv ? long_attr(qkv, "out_features") : -1;
  Py_XDECREF(qkv);
  PyErr_Clear();
  if (out <= 0 || out % (3 * p->heads) != 0)
    return "qkv is not a linear whose out_features 3 x num_heads divides";
  p->hd = out / (3 * p->heads);
  int fused = flag_attr(self, "fused_attn", -1);
  if (fused < 0)
    return "the module has no fused_attn flag";
  if (fused) {
    p->scale = 1.0 / sqrt((double)p->hd);
  } else {
    PyObject *sc = PyObject_GetAttrString(self, "scale");
    p->scale = sc ? PyFloat_AsDouble(sc) : -1.0;
    Py_XDECREF(sc);
    if (PyErr_Occurred()) {
      PyErr_Clear();
      return "the module's scale is not a number";
    }
  }
  int drop = dropout_at_work(self, "attn_drop");
  if (drop != 0)
    return drop < 0 ? "the module has no attn_drop dropout" : "dropout at work (training with attn_drop.p > 0)";
  if (!PyObject_HasAttrString(self, "_get_rel_pos_bias") ||
      !PyObject_HasAttrString(self, "proj") || !PyObject_HasAttrString(self, "proj_drop"))
    return "the module has no _get_rel_pos_bias, proj or proj_drop";
  p->nw = 0;
  if (mask) {
    long m[3];
    if (sizes_of(mask, 3, m, "not 3-dim") || m[0] <= 0 || m[1] != p->n || m[2] != p->n)
      return "the mask is not a tensor (nW, N, N) of plain int sizes";
    if (s[0] > 0 && s[0] % m[0] != 0)
      return "the mask's windows do not divide x's (the original raises)";
    p->nw = m[0];
  }
  return NULL;
}

/* The rewrite (the file's comment).  New reference, or NULL with an
 * exception set. */
static PyObject *attend(PyObject *self, PyObject *x, PyObject *mask, const attn_plan *p)
{
  long a = p->heads * p->hd;
  PyObject *qkv = call_submodule(self, "qkv", Py_NewRef(x));
  PyObject *parts = qkv ? PyObject_CallMethod(qkv, "chunk", "ii", 3, -1) : NULL;
  Py_XDECREF(qkv);
  PyObject *h[3] = {NULL, NULL, NULL};
  if (parts && (!PyTuple_Check(parts) || PyTuple_GET_SIZE(parts) != 3))
    trw__py_raise("qkv's output does not chunk in 3");
  else if (parts)
    for (int i = 0; i < 3; i++) {
      PyObject *t = reshape4(Py_NewRef(PyTuple_GET_ITEM(parts, i)), p->n, p->heads, p->hd);
      h[i] = t ? PyObject_CallMethod(t, "permute", "iiii", 0, 2, 1, 3) : NULL;
      Py_XDECREF(t);
      if (!h[i])
        break;
    }
  Py_XDECREF(parts);
  PyObject *scale = h[2] ? PyFloat_FromDouble(p->scale) : NULL;
  PyObject *q = scale ? PyNumber_Multiply(h[0], scale) : NULL;
  PyObject *kt = q ? PyObject_CallMethod(h[1], "transpose", "ii", -2, -1) : NULL;
  PyObject *attn = kt ? PyNumber_MatrixMultiply(q, kt) : NULL;
  PyObject *bias = attn ? PyObject_CallMethod(self, "_get_rel_pos_bias", NULL) : NULL;
  PyObject *biased = bias ? PyNumber_Add(attn, bias) : NULL;
  Py_XDECREF(attn);
  attn = biased;
  if (attn && mask) {
    long nn = p->n * p->n;
    PyObject *grouped = reshape4(attn, p->nw, p->heads, nn);
    PyObject *m = PyObject_CallMethod(mask, "reshape", "llll", 1L, p->nw, 1L, nn);
    PyObject *sum = grouped && m ? PyNumber_Add(grouped, m) : NULL;
    Py_XDECREF(m);
    Py_XDECREF(grouped);
    attn = reshape4(sum, p->heads, p->n, p->n);
  }
  PyObject *w = attn ? PyObject_CallMethod(attn, "softmax", "i", -1) : NULL;
  PyObject *o = w ? PyNumber_MatrixMultiply(w, h[2]) : NULL;
  o = transpose(o, 1, 2);
  PyObject *flat = o ? PyObject_CallMethod(o, "reshape", "lll", -1L, p->n, a) : NULL;
  Py_XDECREF(o);
  PyObject *y = call_submodule(self, "proj_drop", call_submodule(self, "proj", flat));
  Py_XDECREF(w);
  Py_XDECREF(attn);
  Py_XDECREF(bias);
  Py_XDECREF(kt);
  Py_XDECREF(q);
  Py_XDECREF(scale);
  for (int i = 0; i < 3; i++)
    Py_XDECREF(h[i]);
  return y;
}

static PyObject *window_attention_ncnn(PyObject *self_, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames)
{
  (void)self_;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[3];
  attn_plan p;
  const char *why = unbound_call(origin, attn_params, 3, args, nargs, kwnames, v);
  if (!why)
    why = attn_not_covered(v, &p);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return attend(v[0], v[1], v[2] && v[2] != Py_None ? v[2] : NULL, &p);
}
TRW__PY_BUILTIN("timm.models.swin_transformer.WindowAttention.forward", "ncnn",
                window_attention_ncnn);

/* ------------------------------------------------------------------------ */
/* PatchMerging.forward                                                      */

static const char *const merge_params[] = {"self", "x"};

/* The 2x2 merge of the file's comment on x (B, h, w, c), h and w even.
 * New reference, or NULL with an exception set. */
static PyObject *merge(PyObject *x, long h, long w, long c)
{
  PyObject *t = reshape4(Py_NewRef(x), h / 2, 2, w * c);
  t = transpose(t, 2, 3);
  t = reshape4(t, h / 2 * w, c, 2);
  t = transpose(t, 2, 3);
  return reshape4(t, h / 2, w / 2, 4 * c);
}

/* Why the bound call v is not one the merge rewrite covers, or NULL when
 * it is; sets s to x's sizes. */
static const char *merge_not_covered(PyObject *const *v, long s[4])
{
  if (!v[0] || !v[1])
    return "arguments that do not bind to its signature (the original raises)";
  if (!PyObject_HasAttrString(v[0], "norm") || !PyObject_HasAttrString(v[0], "reduction"))
    return "the module has no norm or reduction";
  return sizes_of(v[1], 4, s, "x is not a tensor of 4 dims (B, H, W, C)");
}

static PyObject *patch_merging_ncnn(PyObject *self_, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
  (void)self_;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[2];
  long s[4];
  const char *why = unbound_call(origin, merge_params, 2, args, nargs, kwnames, v);
  if (!why)
    why = merge_not_covered(v, s);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  PyObject *x = Py_NewRef(v[1]);
  long h = s[1], w = s[2], c = s[3];
  if (h % 2 || w % 2) { /* timm pads odd sizes at the end */
    PyObject *fmod = PyImport_ImportModule("torch.nn.functional");
    PyObject *pad = fmod ? PyObject_GetAttrString(fmod, "pad") : NULL;
    PyObject *values = pad ? Py_BuildValue("(iiiiii)", 0, 0, 0, (int)(w % 2), 0, (int)(h % 2)) : NULL;
    PyObject *padded = values ? PyObject_CallFunctionObjArgs(pad, x, values, NULL) : NULL;
    Py_XDECREF(values);
    Py_XDECREF(pad);
    Py_XDECREF(fmod);
    Py_SETREF(x, padded);
    h += h % 2;
    w += w % 2;
  }
  PyObject *m = x ? merge(x, h, w, c) : NULL;
  Py_XDECREF(x);
  return call_submodule(v[0], "reduction", call_submodule(v[0], "norm", m));
}
TRW__PY_BUILTIN("timm.models.swin_transformer.PatchMerging.forward", "ncnn", patch_merging_ncnn);
