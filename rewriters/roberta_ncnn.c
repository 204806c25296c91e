/*
 * roberta_ncnn.c - RoBERTa's embeddings for ncnn, a rewriter of the Python
 * method transformers.models.roberta.modeling_roberta.RobertaEmbeddings
 * .forward (and of the copies transformers keeps of it, line for line:
 * XLM-RoBERTa, CamemBERT, Data2VecText) in C against the CPython API.
 *
 * RoBERTa numbers the tokens from its padding id on, skipping padding:
 *
 *   mask = input_ids.ne(pad).int()
 *   position_ids = cumsum(mask, 1) * mask + pad
 *   token_type_ids = gather(zeros buffer, 1, position_ids)   (all zeros)
 *   e = word(input_ids) + token_type(token_type_ids) + position(position_ids)
 *
 * Integer arithmetic on the token ids, which ncnn cannot do: its blobs are
 * 32-bit floats, it has no comparison, Cast or CumSum layer (pnnx leaves
 * torch.eq and the CumSum unconverted, and ncnn refuses the file: "layer
 * torch.eq not exists or registered"), and its Embed reads its input as
 * int32 words, which only a graph input gives.  The rewrite computes the
 * same positions in floats, every step an ncnn layer:
 *
 *   m   = embedding(input_ids, keep).transpose(1, 2)     (B, 1, S)
 *         keep: (V, 1), 0 in row pad, 1 elsewhere (Embed of the input)
 *   pos = (linear(m, tril) * m + pad).transpose(1, 2)    (B, S, 1)
 *         tril: (S, S) ones on and below the diagonal: the cumsum
 *   hat = relu(1 - |linear(pos, ones(P, 1), -arange(P))|)  (B, S, P)
 *         one-hot of pos: 1 at column pos, 0 elsewhere (pos is integral)
 *   e   = word(input_ids) + type_row + hat @ position.weight
 *
 * with type_row row 0 of the token-type table when no token_type_ids are
 * given (the original's lookup of its all-zero buffer), else the
 * original's lookup of the given ones (a graph input: ncnn's Embed).  The
 * sums are exact: counts below 2^24, one nonzero per row of hat.  Then
 * LayerNorm and dropout, as the original.
 *
 * It applies to the calls a model makes on token ids without a cache:
 * input_ids a 2-D int64 or int32 tensor of static sizes, no position_ids,
 * no inputs_embeds, cache_length 0, an int padding_idx in the
 * vocabulary, a vocabulary of at least 8 rows (pnnx folds constants by
 * running the graph with every int64 input filled with 7: mask_ncnn.c),
 * positions up to S + pad within the position table (the original would
 * index past it), float embeddings.  Any other call, or a forward of
 * another signature, goes to the original, with the reason at info.  The
 * ncnn file wants its integer inputs fed as int32 words (data/engines.py
 * does, as pnnx's generated *_ncnn.py).
 */
#include "py_util.h"

/* RobertaEmbeddings.forward's parameters, in order (transformers 5). */
enum { E_SELF, E_IDS, E_TYPES, E_POSITIONS, E_EMBEDS, E_CACHE, E_COUNT };
static const char *const forward_params[E_COUNT] = {
    "self", "input_ids", "token_type_ids", "position_ids", "inputs_embeds", "cache_length"};

/* Rows pnnx's constant folding indexes with (mask_ncnn.c). */
#define PNNX_FILLER 7

/* What the rewrite reads of a call, filled by not_covered(). */
typedef struct {
  PyObject *word_weight; /* self.word_embeddings.weight, new reference */
  long b, s, v, p, pad;  /* batch, length, vocabulary, positions, padding id */
} plan;

/* A C long of o when it is an int (not a bool), else -1. */
static long int_of(PyObject *o)
{
  long n = o && PyLong_Check(o) && !PyBool_Check(o) ? PyLong_AsLong(o) : -1;
  PyErr_Clear();
  return n;
}

/* sub.weight.shape[0] of self, or -1 (no exception kept). */
static long rows_of_table(PyObject *self, const char *sub)
{
  PyObject *m = PyObject_GetAttrString(self, sub);
  PyObject *w = m ? PyObject_GetAttrString(m, "weight") : NULL;
  long n = w ? untraced_size(w, 0) : -1;
  Py_XDECREF(w);
  Py_XDECREF(m);
  PyErr_Clear();
  return n;
}

/* Whether o.dtype is torch.<name>, with no exception kept. */
static int dtype_is(PyObject *o, const char *name)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *want = torch ? PyObject_GetAttrString(torch, name) : NULL;
  PyObject *got = want ? PyObject_GetAttrString(o, "dtype") : NULL;
  int r = got && got == want;
  Py_XDECREF(got);
  Py_XDECREF(want);
  Py_XDECREF(torch);
  PyErr_Clear();
  return r;
}

/* Why the call is not one the rewrite covers, or NULL when it is (then p
 * is filled in and p->word_weight must be released). */
static const char *not_covered(PyObject *const *v, plan *p)
{
  PyObject *self = v[E_SELF], *ids = v[E_IDS];
  if (!self || is_none(ids))
    return "no input_ids (inputs_embeds give no padding to number around)";
  if (!is_none(v[E_POSITIONS]))
    return "position_ids are given (nothing to compute)";
  if (!is_none(v[E_EMBEDS]))
    return "inputs_embeds are given";
  if (v[E_CACHE] && int_of(v[E_CACHE]) != 0)
    return "cache_length is not 0 (the positions continue a cache)";
  PyObject *rank = PyObject_CallMethod(ids, "dim", NULL);
  long r = int_of(rank);
  Py_XDECREF(rank);
  if (r != 2 || !(dtype_is(ids, "int64") || dtype_is(ids, "int32")))
    return "input_ids is not a 2-D int64 or int32 tensor";
  p->b = untraced_size(ids, 0);
  p->s = untraced_size(ids, 1);
  if (p->b <= 0 || p->s <= 0)
    return "input_ids' sizes are not static and nonzero";
  PyObject *pad = PyObject_GetAttrString(self, "padding_idx");
  p->pad = int_of(pad);
  Py_XDECREF(pad);
  PyErr_Clear();
  p->v = rows_of_table(self, "word_embeddings");
  p->p = rows_of_table(self, "position_embeddings");
  if (p->pad < 0 || p->pad >= p->v)
    return "padding_idx is not an int in the vocabulary";
  if (p->v <= PNNX_FILLER)
    return "the vocabulary has fewer than 8 rows (pnnx folds constants with every id 7)";
  if (p->s + p->pad >= p->p)
    return "the positions would run past the position table (the original raises)";
  PyObject *word = PyObject_GetAttrString(self, "word_embeddings");
  PyObject *w = word ? PyObject_GetAttrString(word, "weight") : NULL;
  PyObject *dt = w ? PyObject_GetAttrString(w, "dtype") : NULL;
  PyObject *fp = dt ? PyObject_GetAttrString(dt, "is_floating_point") : NULL;
  int is_float = fp == Py_True;
  Py_XDECREF(fp);
  Py_XDECREF(dt);
  Py_XDECREF(word);
  PyErr_Clear();
  if (!is_float) {
    Py_XDECREF(w);
    return "the word embeddings are not of a floating dtype";
  }
  p->word_weight = w;
  return NULL;
}

/* keep: 0 in row pad (*arg), else 1. */
static double keep_entry(long i, long j, const void *pad)
{
  (void)j;
  return i == *(const long *)pad ? 0.0 : 1.0;
}

/* tril: 1 on and below the diagonal (column j counts into position i). */
static double tril_entry(long i, long j, const void *unused)
{
  (void)unused;
  return j <= i ? 1.0 : 0.0;
}

static double one_entry(long i, long j, const void *unused)
{
  (void)i, (void)j, (void)unused;
  return 1.0;
}

/* [-0.0, -1.0, ... -(n - 1)].  New reference, or NULL with an exception. */
static PyObject *minus_arange(long n)
{
  PyObject *l = PyList_New(n);
  for (long k = 0; l && k < n; k++) {
    PyObject *x = PyFloat_FromDouble(-(double)k);
    if (!x) {
      Py_CLEAR(l);
      break;
    }
    PyList_SET_ITEM(l, k, x);
  }
  return l;
}

/* The position embeddings of the file's comment, (B, S, H).  New
 * reference, or NULL with an exception set. */
static PyObject *position_embeddings(PyObject *self, PyObject *ids, const plan *p)
{
  PyObject *like = p->word_weight;
  PyObject *keep = constant_of(float_rows(p->v, 1, keep_entry, &p->pad), like);
  PyObject *tril = keep ? constant_of(float_rows(p->s, p->s, tril_entry, NULL), like) : NULL;
  PyObject *ones = tril ? constant_of(float_rows(p->p, 1, one_entry, NULL), like) : NULL;
  PyObject *negk = ones ? constant_of(minus_arange(p->p), like) : NULL;
  PyObject *fn = negk ? PyImport_ImportModule("torch.nn.functional") : NULL;
  PyObject *torch = fn ? PyImport_ImportModule("torch") : NULL;
  PyObject *looked = torch ? PyObject_CallMethod(fn, "embedding", "OO", ids, keep) : NULL;
  PyObject *m = looked ? PyObject_CallMethod(looked, "transpose", "ii", 1, 2) : NULL;
  PyObject *cum = m ? PyObject_CallMethod(fn, "linear", "OO", m, tril) : NULL;
  PyObject *kept = cum ? PyNumber_Multiply(cum, m) : NULL;
  PyObject *padv = kept ? PyLong_FromLong(p->pad) : NULL;
  PyObject *row = padv ? PyNumber_Add(kept, padv) : NULL;
  PyObject *pos = row ? PyObject_CallMethod(row, "transpose", "ii", 1, 2) : NULL;
  PyObject *diff = pos ? PyObject_CallMethod(fn, "linear", "OOO", pos, ones, negk) : NULL;
  PyObject *dist = diff ? PyObject_CallMethod(torch, "abs", "O", diff) : NULL;
  PyObject *one = dist ? PyLong_FromLong(1) : NULL;
  PyObject *near = one ? PyNumber_Subtract(one, dist) : NULL;
  PyObject *hat = near ? PyObject_CallMethod(torch, "relu", "O", near) : NULL;
  PyObject *table = hat ? PyObject_GetAttrString(self, "position_embeddings") : NULL;
  PyObject *w = table ? PyObject_GetAttrString(table, "weight") : NULL;
  PyObject *out = w ? PyObject_CallMethod(torch, "matmul", "OO", hat, w) : NULL;
  Py_XDECREF(w);
  Py_XDECREF(table);
  Py_XDECREF(hat);
  Py_XDECREF(near);
  Py_XDECREF(one);
  Py_XDECREF(dist);
  Py_XDECREF(diff);
  Py_XDECREF(pos);
  Py_XDECREF(row);
  Py_XDECREF(padv);
  Py_XDECREF(kept);
  Py_XDECREF(cum);
  Py_XDECREF(m);
  Py_XDECREF(looked);
  Py_XDECREF(torch);
  Py_XDECREF(fn);
  Py_XDECREF(negk);
  Py_XDECREF(ones);
  Py_XDECREF(tril);
  Py_XDECREF(keep);
  return out;
}

/* The token-type embeddings: the original's lookup of the given ids, or
 * row 0 of the table, (H,), which broadcasts as the lookup of the
 * original's all-zero buffer.  New reference, or NULL with an exception. */
static PyObject *type_embeddings(PyObject *self, PyObject *types)
{
  PyObject *table = PyObject_GetAttrString(self, "token_type_embeddings");
  if (!table || !is_none(types)) {
    PyObject *r = table ? PyObject_CallOneArg(table, types) : NULL;
    Py_XDECREF(table);
    return r;
  }
  PyObject *w = PyObject_GetAttrString(table, "weight");
  PyObject *zero = w ? PyLong_FromLong(0) : NULL;
  PyObject *r = zero ? PyObject_GetItem(w, zero) : NULL;
  Py_XDECREF(zero);
  Py_XDECREF(w);
  Py_DECREF(table);
  return r;
}

static PyObject *embeddings_ncnn(PyObject *unused, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
  (void)unused;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[E_COUNT];
  plan p = {0};
  const char *why = unbound_call(origin, forward_params, E_COUNT, args, nargs, kwnames, v);
  if (!why)
    why = not_covered(v, &p);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);

  PyObject *self = v[E_SELF];
  PyObject *pos = position_embeddings(self, v[E_IDS], &p);
  PyObject *types = pos ? type_embeddings(self, v[E_TYPES]) : NULL;
  PyObject *words = types ? call_submodule(self, "word_embeddings", Py_NewRef(v[E_IDS])) : NULL;
  PyObject *sum = words ? PyNumber_Add(words, types) : NULL;
  PyObject *e = sum ? PyNumber_Add(sum, pos) : NULL;
  Py_XDECREF(sum);
  Py_XDECREF(words);
  Py_XDECREF(types);
  Py_XDECREF(pos);
  Py_DECREF(p.word_weight);
  return call_submodule(self, "dropout", call_submodule(self, "LayerNorm", e));
}
TRW__PY_BUILTIN("transformers.models.roberta.modeling_roberta.RobertaEmbeddings.forward",
                "ncnn", embeddings_ncnn);
TRW__PY_BUILTIN("transformers.models.xlm_roberta.modeling_xlm_roberta.XLMRobertaEmbeddings"
                ".forward",
                "ncnn", embeddings_ncnn);
TRW__PY_BUILTIN("transformers.models.camembert.modeling_camembert.CamembertEmbeddings.forward",
                "ncnn", embeddings_ncnn);
TRW__PY_BUILTIN("transformers.models.data2vec.modeling_data2vec_text.Data2VecTextEmbeddings"
                ".forward",
                "ncnn", embeddings_ncnn);
