/*
 * check_values.c - what `torchrw check` knows about a model's values (see
 * check_values.h).
 */
#include <stdlib.h>
#include <string.h>

#include "check_values.h"

/* ------------------------------------------------------------------------ */
/* The table of values                                                       */

static uint64_t hash(const char *s)
{
  uint64_t h = 1469598103934665603ull;
  for (; *s != '\0'; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static struct trw__value *slot(struct trw__values *v, const char *name)
{
  size_t i = (size_t)hash(name) & (v->cap - 1);
  while (v->slots[i].name != NULL && strcmp(v->slots[i].name, name) != 0)
    i = (i + 1) & (v->cap - 1);
  return &v->slots[i];
}

const struct trw__value *trw__values_lookup(const struct trw__values *v,
                                            const char *name)
{
  const struct trw__value *s;
  if (v->cap == 0 || name == NULL || name[0] == '\0')
    return NULL;
  s = slot((struct trw__values *)v, name);
  return s->name != NULL ? s : NULL;
}

static int grow(struct trw__values *v)
{
  struct trw__values bigger = {NULL, v->cap ? v->cap * 2 : 256, 0};

  bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
  if (bigger.slots == NULL)
    return TRW_ENOMEM;
  for (size_t i = 0; i < v->cap; i++)
    if (v->slots[i].name != NULL) {
      *slot(&bigger, v->slots[i].name) = v->slots[i];
      bigger.n++;
    }
  free(v->slots);
  *v = bigger;
  return 0;
}

/* Adds what is known about name, merging with what was known before. */
static int learn(struct trw__values *v, const struct trw__value *add)
{
  struct trw__value *s;

  if (add->name == NULL || add->name[0] == '\0')
    return 0;
  if ((v->n + 1) * 2 > v->cap && grow(v) != 0)
    return TRW_ENOMEM;
  s = slot(v, add->name);
  if (s->name == NULL) {
    *s = *add;
    v->n++;
    return 0;
  }
  if (s->dtype == 0)
    s->dtype = add->dtype;
  if (s->shape == NULL && add->shape != NULL) {
    s->shape = add->shape;
    s->is_static = add->is_static;
  }
  if (s->tensor == NULL)
    s->tensor = add->tensor;
  if (s->constant == NULL)
    s->constant = add->constant;
  s->folded |= add->folded;
  s->fixed |= add->fixed;
  if (s->rank < 0)
    s->rank = add->rank;
  if (s->count < 0)
    s->count = add->count;
  return 0;
}

static int learn_vi(struct trw__values *v, const Onnx__ValueInfoProto *vi)
{
  struct trw__value add = {.rank = -1, .count = -1};

  if (vi == NULL)
    return 0;
  add.name = vi->name;
  add.dtype = trw__onnx_vi_dtype(vi);
  add.shape = trw__onnx_vi_shape(vi);
  add.is_static = trw__onnx_shape_static(add.shape);
  add.fixed = add.is_static;
  return learn(v, &add);
}

int trw__values_learn_graph(struct trw__values *v, const Onnx__GraphProto *g)
{
  int rc = 0;

  for (size_t i = 0; rc == 0 && i < g->n_input; i++)
    rc = learn_vi(v, g->input[i]);
  for (size_t i = 0; rc == 0 && i < g->n_output; i++)
    rc = learn_vi(v, g->output[i]);
  for (size_t i = 0; rc == 0 && i < g->n_value_info; i++)
    rc = learn_vi(v, g->value_info[i]);
  for (size_t i = 0; rc == 0 && i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    struct trw__value add = {.rank = -1, .count = -1};
    add.name = t->name;
    add.dtype = t->has_data_type ? t->data_type : 0;
    add.is_static = 1;
    add.tensor = t;
    add.folded = add.fixed = 1;
    rc = learn(v, &add);
  }
  return rc;
}

const Onnx__AttributeProto *trw__node_attr(const Onnx__NodeProto *node,
                                           const char *name)
{
  for (size_t i = 0; i < node->n_attribute; i++)
    if (node->attribute[i] != NULL && node->attribute[i]->name != NULL &&
        strcmp(node->attribute[i]->name, name) == 0)
      return node->attribute[i];
  return NULL;
}

static int is_op(const Onnx__NodeProto *node, const char *op)
{
  return trw__onnx_domain_standard(node->domain) && node->op_type != NULL &&
         strcmp(node->op_type, op) == 0;
}

/* ------------------------------------------------------------------------ */
/* Folding and fixed shapes                                                  */

/* Operators whose output is not a function of their inputs alone. */
static int is_random(const Onnx__NodeProto *node)
{
  static const char *const random[] = {"Bernoulli", "Multinomial",
                                       "RandomNormalLike",
                                       "RandomUniformLike"};
  for (size_t i = 0; i < sizeof(random) / sizeof(random[0]); i++)
    if (is_op(node, random[i]))
      return 1;
  return 0;
}

static int has_subgraph(const Onnx__NodeProto *node)
{
  for (size_t i = 0; i < node->n_attribute; i++) {
    const Onnx__AttributeProto *a = node->attribute[i];
    if (a != NULL && (a->g != NULL || a->n_graphs > 0))
      return 1;
  }
  return 0;
}

/* The inputs whose values, not only shapes, decide an operator's output
 * shape (ONNX's operator specifications), as a bit mask. */
static unsigned shape_inputs(const Onnx__NodeProto *node)
{
  static const struct {
    const char *op;
    unsigned inputs;
  } table[] = {
      {"AffineGrid", 1u << 1},     {"CenterCropPad", 1u << 1},
      {"Col2Im", 6u},              {"ConstantOfShape", 1u << 0},
      {"DFT", 6u},            {"Expand", 1u << 1},
      {"MaxUnpool", 1u << 2},      {"OneHot", 1u << 1},
      {"Pad", (1u << 1) | (1u << 3)}, {"Range", 7u},
      {"ReduceL1", 1u << 1},       {"ReduceL2", 1u << 1},
      {"ReduceLogSum", 1u << 1},   {"ReduceLogSumExp", 1u << 1},
      {"ReduceMax", 1u << 1},      {"ReduceMean", 1u << 1},
      {"ReduceMin", 1u << 1},      {"ReduceProd", 1u << 1},
      {"ReduceSum", 1u << 1},      {"ReduceSumSquare", 1u << 1},
      {"Reshape", 1u << 1},        {"Resize", 14u},
      {"Slice", 30u},              {"Split", 1u << 1},
      {"Squeeze", 1u << 1},        {"STFT", 14u},
      {"Tile", 1u << 1},           {"TopK", 1u << 1},
      {"Unsqueeze", 1u << 1},      {"Upsample", 1u << 1},
  };
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
    if (is_op(node, table[i].op))
      return table[i].inputs;
  return 0;
}

/* Operators whose output shape depends on the input's values in a way no
 * folding decides (how many elements pass a test). */
static int data_dependent_shape(const Onnx__NodeProto *node)
{
  static const char *const ops[] = {"Compress", "ImageDecoder", "NonZero",
                                    "NonMaxSuppression", "StringNormalizer",
                                    "StringSplit", "Unique"};
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
    if (is_op(node, ops[i]))
      return 1;
  /* Sequences and optionals have no tensor shape to fix. */
  return node->op_type != NULL &&
         (strstr(node->op_type, "Sequence") != NULL ||
          strncmp(node->op_type, "Optional", 8) == 0);
}

static int input_folded(const struct trw__values *v, const char *name)
{
  const struct trw__value *in = trw__values_lookup(v, name);
  return in != NULL && in->folded;
}

static int input_fixed(const struct trw__values *v, const char *name)
{
  const struct trw__value *in = trw__values_lookup(v, name);
  return in != NULL && (in->fixed || in->folded);
}

static int omitted(const char *input)
{
  return input == NULL || input[0] == '\0';
}

/* Whether node's output shapes are fixed (see struct trw__folding). */
static int node_fixes_shape(const struct trw__values *v,
                            const Onnx__NodeProto *node)
{
  unsigned by_value = shape_inputs(node);
  size_t given = 0;

  if (!trw__onnx_domain_standard(node->domain) || has_subgraph(node) ||
      data_dependent_shape(node))
    return 0;
  for (size_t i = 0; i < node->n_input; i++) {
    if (omitted(node->input[i]))
      continue;
    if (i < 32 && (by_value & (1u << i)) != 0
            ? !input_folded(v, node->input[i])
            : !input_fixed(v, node->input[i]))
      return 0;
    given++;
  }
  return given > 0;
}

/* Whether a converter with the folding fold computes node's outputs
 * itself (see struct trw__folding). */
static int node_folds(const struct trw__values *v, const Onnx__NodeProto *node,
                      const struct trw__folding *fold)
{
  size_t given = 0;

  if (!fold->enabled || !trw__onnx_domain_standard(node->domain) ||
      is_random(node) || has_subgraph(node))
    return 0;
  if (is_op(node, "Shape") && node->n_input > 0)
    return fold->shape_of_any || input_fixed(v, node->input[0]);
  for (size_t i = 0; i < node->n_input; i++) {
    if (omitted(node->input[i]))
      continue;
    if (!input_folded(v, node->input[i]))
      return 0;
    given++;
  }
  return given > 0;
}

static void infer_size(const struct trw__values *v,
                       const Onnx__NodeProto *node, struct trw__value *out);

/* The dtype of a standard operator's first output where the operator
 * decides it without shape inference: an index or a comparison's, or its
 * data input's for the operators that move or combine values without
 * changing their type.  0 when not known.  A declared dtype (value_info)
 * wins over this (learn). */
static int32_t infer_dtype(const struct trw__values *v,
                           const Onnx__NodeProto *node)
{
  static const char *const as_int64[] = {"Shape", "Size", "NonZero", "ArgMax",
                                         "ArgMin"};
  static const char *const as_bool[] = {"Equal", "Less", "Greater", "LessOrEqual",
                                        "GreaterOrEqual", "Not", "And", "Or",
                                        "Xor", "IsNaN", "IsInf"};
  /* The output's dtype is input `from`'s. */
  static const struct { const char *op; size_t from; } as_input[] = {
      {"Identity", 0}, {"Reshape", 0}, {"Unsqueeze", 0}, {"Squeeze", 0},
      {"Transpose", 0}, {"Flatten", 0}, {"Slice", 0}, {"Gather", 0},
      {"Expand", 0}, {"Tile", 0}, {"Concat", 0}, {"Split", 0}, {"Neg", 0},
      {"Abs", 0}, {"Relu", 0}, {"Add", 0}, {"Sub", 0}, {"Mul", 0},
      {"Div", 0}, {"Where", 1}};
  const struct trw__value *in;

  for (size_t i = 0; i < sizeof(as_int64) / sizeof(as_int64[0]); i++)
    if (is_op(node, as_int64[i]))
      return ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
  for (size_t i = 0; i < sizeof(as_bool) / sizeof(as_bool[0]); i++)
    if (is_op(node, as_bool[i]))
      return ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
  for (size_t i = 0; i < sizeof(as_input) / sizeof(as_input[0]); i++) {
    if (!is_op(node, as_input[i].op) || as_input[i].from >= node->n_input)
      continue;
    in = trw__values_lookup(v, node->input[as_input[i].from]);
    return in != NULL ? in->dtype : 0;
  }
  return 0;
}

int trw__values_learn_node(struct trw__values *v, const Onnx__NodeProto *node,
                           int depth, const struct trw__folding *fold)
{
  struct trw__value add = {.rank = -1, .count = -1};
  const Onnx__AttributeProto *a;
  int rc = 0;

  if (node->n_output == 0)
    return 0;
  add.name = node->output[0];
  if (is_op(node, "Constant")) {
    add.constant = node;
    add.is_static = 1;
    add.folded = add.fixed = 1;
    if ((a = trw__node_attr(node, "value")) != NULL && a->t != NULL)
      add.dtype = a->t->has_data_type ? a->t->data_type : 0;
    else if (trw__node_attr(node, "value_int") ||
             trw__node_attr(node, "value_ints"))
      add.dtype = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    else if (trw__node_attr(node, "value_float") ||
             trw__node_attr(node, "value_floats"))
      add.dtype = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    return learn(v, &add);
  }
  if (is_op(node, "Cast") && (a = trw__node_attr(node, "to")) != NULL &&
      a->has_i && a->i > 0 && a->i < 64)
    add.dtype = (int32_t)a->i;
  else
    add.dtype = infer_dtype(v, node);
  if (depth == 0 && fold->enabled) {
    add.folded = node_folds(v, node, fold);
    /* Shapes matter only to a Shape that is not folded anyway. */
    add.fixed = !fold->shape_of_any && node_fixes_shape(v, node);
    /* Every output: Split's parts are as its first. */
    for (size_t i = 1; rc == 0 && i < node->n_output; i++) {
      struct trw__value more = {.rank = -1, .count = -1};
      more.name = node->output[i];
      more.folded = add.folded;
      more.fixed = add.fixed;
      if (more.folded || more.fixed)
        rc = learn(v, &more);
    }
  }
  infer_size(v, node, &add);
  if (rc == 0 && (add.dtype != 0 || add.folded || add.fixed ||
                  add.rank >= 0 || add.count >= 0))
    rc = learn(v, &add);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Constants                                                                 */

/* Reads one integer element of t; returns 0 or -1. */
static int tensor_int(const Onnx__TensorProto *t, size_t i, int64_t *out)
{
  int32_t dt = t->has_data_type ? t->data_type : 0;

  if (t->has_data_location &&
      t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return -1; /* Never read external weights. */
  if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
    if (i < t->n_int64_data) {
      *out = t->int64_data[i];
      return 0;
    }
    if (t->has_raw_data && t->raw_data.len / 8 > i) {
      memcpy(out, t->raw_data.data + i * 8, 8); /* Little-endian hosts. */
      return 0;
    }
  } else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
    int32_t v;
    if (i < t->n_int32_data) {
      *out = t->int32_data[i];
      return 0;
    }
    if (t->has_raw_data && t->raw_data.len / 4 > i) {
      memcpy(&v, t->raw_data.data + i * 4, 4);
      *out = v;
      return 0;
    }
  } else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL) {
    /* One byte each in raw_data, or an int32 each (ONNX's TensorProto). */
    if (i < t->n_int32_data) {
      *out = t->int32_data[i] != 0;
      return 0;
    }
    if (t->has_raw_data && t->raw_data.len > i) {
      *out = t->raw_data.data[i] != 0;
      return 0;
    }
  }
  return -1;
}

/* The largest integer in a constant value; returns 0 or -1 (unknown). */
int trw__value_const_range(const struct trw__value *v, int64_t *min,
                           int64_t *max)
{
  const Onnx__TensorProto *t = v->tensor;
  const Onnx__AttributeProto *a;
  int64_t x;
  size_t i;

  if (t == NULL && v->constant != NULL) {
    if ((a = trw__node_attr(v->constant, "value_int")) != NULL && a->has_i) {
      *min = *max = a->i;
      return 0;
    }
    if ((a = trw__node_attr(v->constant, "value_ints")) != NULL && a->n_ints > 0) {
      *min = *max = a->ints[0];
      for (i = 1; i < a->n_ints; i++) {
        if (a->ints[i] > *max)
          *max = a->ints[i];
        if (a->ints[i] < *min)
          *min = a->ints[i];
      }
      return 0;
    }
    if ((a = trw__node_attr(v->constant, "value")) != NULL)
      t = a->t;
  }
  if (t == NULL || tensor_int(t, 0, max) != 0)
    return -1;
  *min = *max;
  for (i = 1; i < 4096 && tensor_int(t, i, &x) == 0; i++) {
    if (x > *max)
      *max = x;
    if (x < *min)
      *min = x;
  }
  return 0;
}

int trw__value_const_max(const struct trw__value *v, int64_t *max)
{
  int64_t min;
  return trw__value_const_range(v, &min, max);
}

/* A value's element count: a constant's, or a computed value's whose
 * declared shape is static (value_info: Reshape's computed shape of 5
 * elements makes a 5-dim output as a constant one does).  -1 when not
 * known. */
int trw__value_elements(const struct trw__value *v, int64_t *n)
{
  const Onnx__TensorProto *t = v->tensor;
  const Onnx__AttributeProto *a;

  if (t == NULL && v->constant != NULL) {
    if ((a = trw__node_attr(v->constant, "value_int")) != NULL && a->has_i) {
      *n = 1;
      return 0;
    }
    if ((a = trw__node_attr(v->constant, "value_ints")) != NULL) {
      *n = (int64_t)a->n_ints;
      return 0;
    }
    if ((a = trw__node_attr(v->constant, "value_float")) != NULL && a->has_f) {
      *n = 1;
      return 0;
    }
    if ((a = trw__node_attr(v->constant, "value_floats")) != NULL) {
      *n = (int64_t)a->n_floats;
      return 0;
    }
    if ((a = trw__node_attr(v->constant, "value")) != NULL)
      t = a->t;
  }
  if (t != NULL) {
    *n = 1;
    for (size_t i = 0; i < t->n_dims; i++)
      *n *= t->dims[i];
    return 0;
  }
  if (v->shape == NULL || !v->is_static) {
    *n = v->count;
    return v->count >= 0 ? 0 : -1;
  }
  *n = 1;
  for (size_t i = 0; i < v->shape->n_dim; i++)
    *n *= v->shape->dim[i]->dim_value;
  return 0;
}

int trw__value_is_constant(const struct trw__value *v)
{
  return v != NULL && (v->tensor != NULL || v->constant != NULL);
}

void trw__values_free(struct trw__values *v)
{
  free(v->slots);
  v->slots = NULL;
  v->cap = v->n = 0;
}

int trw__value_rank(const struct trw__value *v, int64_t *rank)
{
  const Onnx__TensorProto *t = v->tensor;
  const Onnx__AttributeProto *a;

  if (t == NULL && v->constant != NULL) {
    if (trw__node_attr(v->constant, "value_int") != NULL ||
        trw__node_attr(v->constant, "value_float") != NULL) {
      *rank = 0;
      return 0;
    }
    if (trw__node_attr(v->constant, "value_ints") != NULL ||
        trw__node_attr(v->constant, "value_floats") != NULL) {
      *rank = 1;
      return 0;
    }
    if ((a = trw__node_attr(v->constant, "value")) != NULL)
      t = a->t;
  }
  if (t != NULL) {
    *rank = (int64_t)t->n_dims;
    return 0;
  }
  if (v->shape == NULL) {
    *rank = v->rank;
    return v->rank >= 0 ? 0 : -1;
  }
  *rank = (int64_t)v->shape->n_dim;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Sizes of shape vectors                                                    */

/* Element i of a constant value of integers: 0, or -1. */
static int value_int(const struct trw__value *v, size_t i, int64_t *out)
{
  const Onnx__AttributeProto *a;

  if (v->tensor != NULL)
    return tensor_int(v->tensor, i, out);
  if (v->constant == NULL)
    return -1;
  if ((a = trw__node_attr(v->constant, "value_int")) != NULL && a->has_i &&
      i == 0) {
    *out = a->i;
    return 0;
  }
  if ((a = trw__node_attr(v->constant, "value_ints")) != NULL &&
      i < a->n_ints) {
    *out = a->ints[i];
    return 0;
  }
  if ((a = trw__node_attr(v->constant, "value")) != NULL && a->t != NULL)
    return tensor_int(a->t, i, out);
  return -1;
}

static const struct trw__value *input(const struct trw__values *v,
                                      const Onnx__NodeProto *node, size_t i)
{
  return i < node->n_input ? trw__values_lookup(v, node->input[i]) : NULL;
}

static int64_t rank_of(const struct trw__value *in)
{
  int64_t r;
  return in != NULL && trw__value_rank(in, &r) == 0 ? r : -1;
}

static int64_t count_of(const struct trw__value *in)
{
  int64_t n;
  return in != NULL && trw__value_elements(in, &n) == 0 ? n : -1;
}

/* An integer attribute, or dflt. */
static int64_t int_attr(const Onnx__NodeProto *node, const char *name,
                        int64_t dflt)
{
  const Onnx__AttributeProto *a = trw__node_attr(node, name);
  return a != NULL && a->has_i ? a->i : dflt;
}

/* Python-style [start:end] of a length n, as ONNX's Shape and Slice
 * clamp them (step 1). */
static int64_t clamped_length(int64_t n, int64_t start, int64_t end)
{
  if (start < 0)
    start += n;
  if (end < 0)
    end += n;
  start = start < 0 ? 0 : start > n ? n : start;
  end = end < 0 ? 0 : end > n ? n : end;
  return end > start ? end - start : 0;
}

/* Works out the rank and element count of a node's first output where
 * the file does not declare them, for the operators that build and
 * carry shape vectors: enough to know a computed Reshape shape's length
 * (TorchScript's exports declare no value_info).  Leaves out alone when
 * it cannot tell. */
static void infer_size(const struct trw__values *v,
                       const Onnx__NodeProto *node, struct trw__value *out)
{
  static const char *const same[] = {
      "Abs",  "Cast",  "Ceil",       "Floor", "Identity", "Neg",
      "Not",  "Relu",  "Reciprocal", "Round", "Sign",     "Sqrt"};
  static const char *const elementwise[] = {
      "Add",  "And",  "Div",         "Equal", "Greater", "GreaterOrEqual",
      "Less", "LessOrEqual", "Max",  "Min",   "Mod",     "Mul",
      "Or",   "Pow",  "Sub",         "Where", "Xor"};
  const struct trw__value *x = input(v, node, 0);

  if (!trw__onnx_domain_standard(node->domain) || node->op_type == NULL)
    return;
  if (is_op(node, "Shape")) {
    int64_t r = rank_of(x);
    out->rank = 1;
    if (r >= 0)
      out->count = clamped_length(r, int_attr(node, "start", 0),
                                  int_attr(node, "end", r));
    return;
  }
  if (is_op(node, "Size")) {
    out->rank = 0;
    out->count = 1;
    return;
  }
  for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
    if (is_op(node, same[i])) {
      out->rank = rank_of(x);
      out->count = count_of(x);
      return;
    }
  for (size_t i = 0; i < sizeof(elementwise) / sizeof(elementwise[0]); i++)
    if (is_op(node, elementwise[i])) {
      /* Shape arithmetic: vectors of one length, and scalars. */
      int64_t rank = -1, count = 1;
      for (size_t k = 0; k < node->n_input; k++) {
        const struct trw__value *in = input(v, node, k);
        int64_t r = rank_of(in), n = count_of(in);
        if (r < 0 || n < 0 || r > 1 || (n != 1 && count != 1 && n != count))
          return;
        rank = r > rank ? r : rank;
        count = n > count ? n : count;
      }
      out->rank = rank;
      out->count = count;
      return;
    }
  if (is_op(node, "Concat")) {
    int64_t sum = 0;
    for (size_t k = 0; k < node->n_input; k++) {
      int64_t n = count_of(input(v, node, k));
      if (n < 0)
        return;
      sum += n;
    }
    out->rank = rank_of(x);
    out->count = sum;
    return;
  }
  if (is_op(node, "Unsqueeze") || is_op(node, "Squeeze")) {
    const Onnx__AttributeProto *a = trw__node_attr(node, "axes");
    int64_t r = rank_of(x), axes = -1;
    out->count = count_of(x);
    if (a != NULL)
      axes = (int64_t)a->n_ints;
    else if (node->n_input > 1)
      axes = count_of(input(v, node, 1));
    if (r >= 0 && axes >= 0)
      out->rank = is_op(node, "Unsqueeze") ? r + axes : r - axes;
    return;
  }
  if (is_op(node, "Gather")) {
    /* One or more elements picked from a vector. */
    const struct trw__value *idx = input(v, node, 1);
    if (rank_of(x) == 1 && rank_of(idx) >= 0) {
      out->rank = rank_of(idx);
      out->count = count_of(idx);
    }
    return;
  }
  if (is_op(node, "Slice") && rank_of(x) == 1 && count_of(x) >= 0) {
    /* A vector's [start:end] with constant bounds and step 1. */
    const struct trw__value *st = input(v, node, 1), *en = input(v, node, 2);
    const struct trw__value *sp = input(v, node, 4);
    int64_t start, end, step = 1;
    if (node->n_input < 3) { /* Slice-1: attributes */
      const Onnx__AttributeProto *as = trw__node_attr(node, "starts");
      const Onnx__AttributeProto *ae = trw__node_attr(node, "ends");
      if (as == NULL || ae == NULL || as->n_ints != 1 || ae->n_ints != 1)
        return;
      start = as->ints[0];
      end = ae->ints[0];
    } else if (st == NULL || en == NULL || count_of(st) != 1 ||
               count_of(en) != 1 || value_int(st, 0, &start) != 0 ||
               value_int(en, 0, &end) != 0) {
      return;
    }
    if (sp != NULL && value_int(sp, 0, &step) != 0)
      return;
    if (step != 1)
      return;
    out->rank = 1;
    out->count = clamped_length(count_of(x), start, end);
    return;
  }
  if (is_op(node, "Reshape")) {
    out->rank = count_of(input(v, node, 1));
    out->count = count_of(x);
    return;
  }
  if (is_op(node, "Transpose")) {
    out->rank = rank_of(x);
    out->count = count_of(x);
  }
}
