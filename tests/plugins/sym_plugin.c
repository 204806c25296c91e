/*
 * sym_plugin.c - C symbolic rewriters for the tests, built against
 * torchrw.h alone: constant inputs, every attribute kind, custom domains,
 * several outputs, sizes and dtypes, and calling the original symbolic.
 */
#include "torchrw.h"

/* leaky_relu(x, slope): LeakyRelu with twice the (constant) slope. */
static int leaky_double(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                        trw_sym **result)
{
  double slope;
  if (nin < 2 || trw_sym_const_double(in[1], &slope) != 0)
    return trw_error(ctx, TRW_EINVAL, "slope is not a constant");
  trw_attr alpha = TRW_ATTR_FLOAT("alpha", slope * 2);
  *result = trw_g_op(ctx, g, "LeakyRelu", 1, in, &alpha, 1);
  return *result ? 0 : TRW_EOP;
}
TRW_SYMBOLIC_REWRITER("leaky_relu", "tensorrt", leaky_double);

/* topk(x, k, dim, largest, sorted): TopK with two outputs, k and axis
 * read from constant inputs. */
static int topk_two_outputs(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                            trw_sym **result)
{
  int64_t k, dim;
  if (nin < 3 || trw_sym_const_int(in[1], &k) != 0 || trw_sym_const_int(in[2], &dim) != 0)
    return trw_call_original_symbolic(ctx, g, nin, in, result);
  trw_sym *args[2] = {in[0], trw_g_const_ints(ctx, g, &k, 1)};
  trw_attr axis = TRW_ATTR_INT("axis", dim);
  trw_sym *outs[2];
  int rc = trw_g_op_n(ctx, g, "TopK", 2, args, &axis, 1, 2, outs);
  if (rc != 0)
    return rc;
  *result = trw_g_tuple(ctx, g, 2, outs);
  return *result ? 0 : TRW_EOP;
}
TRW_SYMBOLIC_REWRITER("aten::topk", "tensorrt", topk_two_outputs);

/* relu(x): a custom-domain node carrying every attribute kind, plus what
 * the symbolic could read about its input. */
static int relu_probe(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                      trw_sym **result)
{
  (void)nin;
  int64_t size0 = -1;
  trw_sym_size(in[0], 0, &size0);
  const int64_t ints[3] = {trw_sym_rank(in[0]), size0, (int64_t)trw_sym_dtype(in[0])};
  const double floats[2] = {0.5, 1.5};
  const float table[4] = {1, 2, 3, 4};
  const int64_t dims[2] = {2, 2};
  trw_attr attrs[] = {
      TRW_ATTR_INT("opset", trw_ctx_opset(ctx)),
      TRW_ATTR_FLOAT("scale", 0.25),
      TRW_ATTR_STRING("backend", trw_ctx_backend(ctx)),
      TRW_ATTR_INTS("seen", ints, 3),
      TRW_ATTR_FLOATS("weights", floats, 2),
      TRW_ATTR_TENSOR("table", table, TRW_DTYPE_FLOAT32, dims, 2, 4),
  };
  *result = trw_g_op(ctx, g, "trw.test::Probe", 1, in, attrs, sizeof attrs / sizeof attrs[0]);
  return *result ? 0 : TRW_EOP;
}
TRW_SYMBOLIC_REWRITER("relu", "ncnn", relu_probe);

/* The autograd Function userpkg.ops.MyClamp: its own symbolic, then Neg. */
static int clamp_then_neg(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                          trw_sym **result)
{
  trw_sym *clipped = NULL;
  int rc = trw_call_original_symbolic(ctx, g, nin, in, &clipped);
  if (rc != 0)
    return rc;
  *result = trw_g_op(ctx, g, "Neg", 1, &clipped, NULL, 0);
  return *result ? 0 : TRW_EOP;
}
TRW_SYMBOLIC_REWRITER("userpkg.ops.MyClamp", "openvino", clamp_then_neg);

/* elu: fails, to see the message. */
static int elu_fails(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                     trw_sym **result)
{
  (void)g, (void)nin, (void)in, (void)result;
  return trw_error(ctx, TRW_EINVAL, "elu is not supported by this test plugin");
}
TRW_SYMBOLIC_REWRITER("elu", "openvino", elu_fails);
