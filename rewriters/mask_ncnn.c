/*
 * mask_ncnn.c - transformers' attention masks for ncnn, rewriters of the
 * Python functions transformers.masking_utils.create_bidirectional_mask
 * and create_causal_mask in C against the CPython API.
 *
 * transformers (5.x) builds the mask of every BERT-, RoBERTa-, GPT-2-style
 * model from the tokenizer's 2-D integer attention_mask in these two
 * functions: _preprocess_mask_arguments casts it to bool, sdpa_mask indexes
 * it with aranges (padding_mask[batch_idx, kv_idx]) and ands it with the
 * causal pattern, eager_mask turns it into 0 / finfo.min with torch.where,
 * and torch's attention (or torchrw's rewrite of it below opset 14) masks
 * the scores with Not and Where.  The graph holds Cast to bool, Gather by
 * computed indices, And, Equal, Where and Not, none of which ncnn has: its
 * blobs are 32-bit words, no bool, no Cast (pnnx keeps Tensor.to, even
 * int64 to float, and ncnn refuses it: "layer Tensor.to not exists or
 * registered").  What ncnn does have is Embed, a lookup whose input words
 * are int32 indices (pnnx makes one of every Gather of a constant table by
 * a graph input, the token embedding among them).  So the rewrite builds
 * the additive float mask both attentions take by a lookup:
 *
 *   table = [[neg], [0], [0], ... [0]]                8 x 1, the embeds' dtype
 *   bias  = embedding(attention_mask, table)            (B, S, 1)
 *               .transpose(1, 2).unsqueeze(1)           (B, 1, 1, S)
 *   causal: bias + C, C[i][j] = neg where j > i         (B, 1, S, S)
 *
 * with neg half of finfo(dtype).min, so that padding and the causal
 * pattern add up to no less than finfo.min (no -inf, as eager_mask: a row
 * with nothing to attend to gets equal weights, not NaN).  A 0 in the mask
 * looks row 0 up (masked), any other value below 8 a 0 (attended), as
 * attention_mask.to(bool) reads it; ncnn's Embed clamps an index past the
 * table to its last row (attended, as bool reads it too).  The table has 8
 * rows, not 2, because pnnx folds constants by running the graph in ONNX
 * Runtime with every int64 input filled with 7 (tools/pnnx/src/pass_onnx/
 * fold_constants.cpp), and ONNX Runtime refuses an index past the table.
 * The causal part is a constant made while the tracer looks away, of the
 * example's length: ncnn's graphs have static shapes (the size rewriters
 * of ncnn_python.c make sizes constants as well).
 *
 * It applies to the calls a model makes without a cache: attention_mask a
 * 2-D int64 or int32 tensor of static sizes, the config's attention "sdpa"
 * or "eager" (both add a float mask to the scores), no or/and mask
 * functions and no block_sequence_ids, and for the causal mask as many
 * queries as keys.  Any other call goes to the original, with the reason
 * at info.  The ncnn file then wants its integer inputs fed as int32
 * words, as pnnx's generated *_ncnn.py feeds them (data/engines.py does).
 */
#include "py_util.h"

/* create_bidirectional_mask's parameters, in order (transformers 5). */
enum {
  B_CONFIG, B_EMBEDS, B_MASK, B_ENCODER, B_CACHE, B_OR, B_AND, B_ALLOW_SKIP, B_POSITIONS,
  B_COUNT
};
static const char *const bidirectional_params[B_COUNT] = {
    "config",         "inputs_embeds",     "attention_mask",
    "encoder_hidden_states", "cache",      "or_mask_function",
    "and_mask_function", "allow_is_bidirectional_skip", "position_ids"};

/* create_causal_mask's parameters, in order (transformers 5). */
enum {
  C_CONFIG, C_EMBEDS, C_MASK, C_CACHE, C_POSITIONS, C_OR, C_AND, C_BLOCKS, C_LAYER,
  C_ALLOW_SKIP, C_COUNT
};
static const char *const causal_params[C_COUNT] = {
    "config",           "inputs_embeds",     "attention_mask", "cache",
    "position_ids",     "or_mask_function",  "and_mask_function",
    "block_sequence_ids", "layer_idx",       "allow_is_causal_skip"};

/* Rows of the lookup table (the file's comment: pnnx's filler is 7). */
#define TABLE_ROWS 8

/* Whether o's attribute attr is the attribute name of torch (o.dtype is
 * torch.int64), with no exception kept. */
static int attr_is_torch(PyObject *o, const char *attr, const char *name)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *want = torch ? PyObject_GetAttrString(torch, name) : NULL;
  PyObject *got = want ? PyObject_GetAttrString(o, attr) : NULL;
  int r = got && got == want;
  Py_XDECREF(got);
  Py_XDECREF(want);
  Py_XDECREF(torch);
  PyErr_Clear();
  return r;
}

/* Whether t is a tensor of a floating dtype, with no exception kept. */
static int is_float_tensor(PyObject *t)
{
  PyObject *dtype = t ? PyObject_GetAttrString(t, "dtype") : NULL;
  PyObject *fp = dtype ? PyObject_GetAttrString(dtype, "is_floating_point") : NULL;
  int r = fp == Py_True;
  Py_XDECREF(fp);
  Py_XDECREF(dtype);
  PyErr_Clear();
  return r;
}

/* What the rewrite needs of a call, read by covered(). */
typedef struct {
  PyObject *mask, *like; /* the 2-D mask; the tensor whose dtype the mask takes */
  long b, s;             /* the mask's sizes */
} mask_call;

/* Why the call is not one the rewrite covers, or NULL when it is (then
 * *m is filled in).  embeds is inputs_embeds; like the tensor whose dtype
 * the mask gets (encoder_hidden_states when given, as the original). */
static const char *not_covered(PyObject *config, PyObject *embeds, PyObject *like,
                               PyObject *mask, PyObject *cache, PyObject *or_fn,
                               PyObject *and_fn, mask_call *m)
{
  if (!config || !embeds)
    return "a required argument is missing (the original raises)";
  if (is_none(mask))
    return "no attention_mask (nothing to pad; the original builds what it needs)";
  if (!is_none(cache))
    return "a cache is given (its offsets and lengths shape the mask)";
  if (!is_none(or_fn) || !is_none(and_fn))
    return "an or_mask_function or and_mask_function is given";
  PyObject *impl = PyObject_GetAttrString(config, "_attn_implementation");
  const char *name = impl && PyUnicode_Check(impl) ? PyUnicode_AsUTF8(impl) : NULL;
  int additive = name && (strcmp(name, "sdpa") == 0 || strcmp(name, "eager") == 0);
  Py_XDECREF(impl);
  PyErr_Clear();
  if (!additive)
    return "the config's attention is neither sdpa nor eager (they add a float mask)";
  PyObject *rank = PyObject_CallMethod(mask, "dim", NULL);
  long r = rank && PyLong_Check(rank) ? PyLong_AsLong(rank) : -1;
  Py_XDECREF(rank);
  PyErr_Clear();
  if (r != 2 || !(attr_is_torch(mask, "dtype", "int64") || attr_is_torch(mask, "dtype", "int32")))
    return "attention_mask is not a 2-D int64 or int32 tensor (a tokenizer's mask)";
  if (!is_float_tensor(like))
    return "the embeddings are not of a floating dtype";
  m->b = untraced_size(mask, 0);
  m->s = untraced_size(mask, 1);
  if (m->b <= 0 || m->s <= 0)
    return "attention_mask's sizes are not static and nonzero";
  m->mask = mask;
  m->like = like;
  return NULL;
}

/* Half of finfo(like.dtype).min; sets *neg, or returns -1 with an
 * exception set. */
static int half_min(PyObject *like, double *neg)
{
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *dtype = torch ? PyObject_GetAttrString(like, "dtype") : NULL;
  PyObject *info = dtype ? PyObject_CallMethod(torch, "finfo", "O", dtype) : NULL;
  PyObject *min = info ? PyObject_GetAttrString(info, "min") : NULL;
  double v = min ? PyFloat_AsDouble(min) : -1.0;
  int rc = min && !(v == -1.0 && PyErr_Occurred()) ? 0 : -1;
  *neg = v / 2.0;
  Py_XDECREF(min);
  Py_XDECREF(info);
  Py_XDECREF(dtype);
  Py_XDECREF(torch);
  return rc;
}

/* The lookup table's entry: neg (*arg) for index 0 (masked) only. */
static double table_entry(long i, long j, const void *neg)
{
  (void)j;
  return i == 0 ? *(const double *)neg : 0.0;
}

/* The causal pattern's entry: neg (*arg) past key i for query i. */
static double causal_entry(long i, long j, const void *neg)
{
  return j > i ? *(const double *)neg : 0.0;
}

/* The rewrite (the file's comment): the additive mask, with the causal
 * pattern when causal.  New reference, or NULL with an exception set. */
static PyObject *additive_mask(const mask_call *m, int causal)
{
  double neg;
  if (half_min(m->like, &neg) != 0)
    return NULL;
  PyObject *table = constant_of(float_rows(TABLE_ROWS, 1, table_entry, &neg), m->like);
  PyObject *fmod = table ? PyImport_ImportModule("torch.nn.functional") : NULL;
  PyObject *bias = fmod ? PyObject_CallMethod(fmod, "embedding", "OO", m->mask, table) : NULL;
  PyObject *keys = bias ? PyObject_CallMethod(bias, "transpose", "ii", 1, 2) : NULL;
  PyObject *out = keys ? PyObject_CallMethod(keys, "unsqueeze", "i", 1) : NULL;
  if (out && causal) {
    PyObject *pattern = constant_of(float_rows(m->s, m->s, causal_entry, &neg), m->like);
    PyObject *sum = pattern ? PyNumber_Add(out, pattern) : NULL;
    Py_XDECREF(pattern);
    Py_SETREF(out, sum);
  }
  Py_XDECREF(keys);
  Py_XDECREF(bias);
  Py_XDECREF(fmod);
  Py_XDECREF(table);
  return out;
}

static PyObject *bidirectional_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
  (void)self;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[B_COUNT];
  mask_call m;
  const char *unbound = unbound_call(origin, bidirectional_params, B_COUNT, args, nargs, kwnames, v);
  if (unbound)
    return to_original(origin, unbound, args, nargs, kwnames);
  PyObject *like = is_none(v[B_ENCODER]) ? v[B_EMBEDS] : v[B_ENCODER];
  const char *why = not_covered(v[B_CONFIG], v[B_EMBEDS], like, v[B_MASK], v[B_CACHE], v[B_OR],
                                v[B_AND], &m);
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return additive_mask(&m, 0);
}
TRW__PY_BUILTIN("transformers.masking_utils.create_bidirectional_mask", "ncnn",
                bidirectional_ncnn);

static PyObject *causal_ncnn(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
  (void)self;
  PyObject *origin = origin_of_context();
  if (!origin)
    return NULL;
  PyObject *v[C_COUNT];
  mask_call m;
  const char *unbound = unbound_call(origin, causal_params, C_COUNT, args, nargs, kwnames, v);
  if (unbound)
    return to_original(origin, unbound, args, nargs, kwnames);
  const char *why = not_covered(v[C_CONFIG], v[C_EMBEDS], v[C_EMBEDS], v[C_MASK], v[C_CACHE],
                                v[C_OR], v[C_AND], &m);
  if (!why && !is_none(v[C_BLOCKS]))
    why = "block_sequence_ids are given";
  /* config.is_causal False: the original builds the bidirectional mask. */
  PyObject *flag = why ? NULL : PyObject_GetAttrString(v[C_CONFIG], "is_causal");
  int causal = flag ? PyObject_IsTrue(flag) : 1;
  Py_XDECREF(flag);
  PyErr_Clear();
  if (!why && causal < 0)
    why = "config.is_causal has no truth value";
  if (!why && causal && untraced_size(v[C_EMBEDS], 1) != m.s)
    why = "not as many queries as keys (inputs_embeds' length is not attention_mask's)";
  if (why)
    return to_original(origin, why, args, nargs, kwnames);
  Py_DECREF(origin);
  return additive_mask(&m, causal);
}
TRW__PY_BUILTIN("transformers.masking_utils.create_causal_mask", "ncnn", causal_ncnn);
