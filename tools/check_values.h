/*
 * check_values.h - what `torchrw check` knows about a model's values:
 * their dtypes and shapes as the file declares them, the constants the
 * file holds, and which values a backend's converter computes itself
 * before it converts (folding).  Internal to tools/check.c.
 *
 * No shape inference is run: what the file does not declare is unknown.
 */
#ifndef TRW_CHECK_VALUES_H
#define TRW_CHECK_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include "trwonnx.h"

/* What the file says about one value. */
struct trw__value {
  const char *name;
  int32_t dtype;                 /* 0 when unknown */
  const Onnx__TensorShapeProto *shape; /* NULL when unknown */
  int is_static;                 /* shape known to be static */
  const Onnx__TensorProto *tensor;  /* an initializer */
  const Onnx__NodeProto *constant;  /* the Constant node producing it */
  int folded;                    /* known before run time (see below) */
  int fixed;                     /* its shape follows from the graph
                                    inputs' static shapes (see below) */
  int64_t rank, count;           /* worked out from the nodes when the
                                    file does not say: -1 unknown */
};

/* An open-addressing hash table of values by name.  Zero-initialise it;
 * trw__values_free() releases it.  Names point into the model, which
 * must outlive the table. */
struct trw__values {
  struct trw__value *slots;
  size_t cap, n;
};

/*
 * Which values a converter computes while it converts, so that an input
 * rule that wants a constant is met by them (a capability table's
 * graph.folding).  A value is folded when it is an initializer or a
 * Constant's output, or the output of a standard operator without
 * subgraphs whose every input is folded; Shape's output is folded for
 * any input when shape_of_any (the converter is given the input shapes
 * and computes every shape: pnnx), else when its input's shape is fixed.
 * A shape is fixed when the file declares it static, or when it is the
 * output of a standard operator without subgraphs whose inputs all have
 * fixed shapes and whose output shape does not depend on run-time values
 * (Reshape's shape, Slice's starts, ... are folded; NonZero, Unique and
 * the like never).  Only the main graph's nodes fold.
 */
struct trw__folding {
  int enabled;
  int shape_of_any;
};

/* Learns a graph's inputs, outputs, value_info and initializers.
 * Returns 0 or TRW_ENOMEM. */
int trw__values_learn_graph(struct trw__values *v, const Onnx__GraphProto *g);

/* Learns what node's outputs are: a Constant's value, a Cast's dtype
 * (and the dtype of the operators that decide it without shapes),
 * and, with fold->enabled and depth 0, whether they are folded.  Nodes
 * must come in graph order (ONNX's topological order).  Returns 0 or
 * TRW_ENOMEM. */
int trw__values_learn_node(struct trw__values *v, const Onnx__NodeProto *node,
                           int depth, const struct trw__folding *fold);

/* The value called name, or NULL when nothing is known of it. */
const struct trw__value *trw__values_lookup(const struct trw__values *v,
                                            const char *name);

/* Whether a value is in the file as a constant (an initializer or a
 * Constant node's output). */
int trw__value_is_constant(const struct trw__value *v);

/* The largest integer in a constant value: 0, or -1 when it is not a
 * constant of integers the file holds (external data is never read). */
int trw__value_const_max(const struct trw__value *v, int64_t *max);

/* The smallest and the largest integer in a constant value (the first
 * 4096 elements of a tensor): 0, or -1 as for trw__value_const_max. */
int trw__value_const_range(const struct trw__value *v, int64_t *min,
                           int64_t *max);

/* A value's element count: a constant's, or a computed value's whose
 * declared shape is static, or one worked out from the operators that
 * build shape vectors (Shape, Gather, Unsqueeze, Concat, Slice, Cast,
 * elementwise arithmetic: a Reshape's shape of 6 parts has 6 elements
 * though the file declares nothing).  0, or -1 when not known. */
int trw__value_elements(const struct trw__value *v, int64_t *n);

/* A value's rank: a constant's, a computed value's declared one, or one
 * worked out as for the element count.  0, or -1 when not known. */
int trw__value_rank(const struct trw__value *v, int64_t *rank);

/* The attribute of node called name, or NULL. */
const Onnx__AttributeProto *trw__node_attr(const Onnx__NodeProto *node,
                                           const char *name);

void trw__values_free(struct trw__values *v);

#endif /* TRW_CHECK_VALUES_H */
