/*
 * norm.c - torch.layer_norm and torch.group_norm.
 *
 * default, layer_norm below opset 17: ONNX has LayerNormalization only
 * from opset 17, and older torch versions exported the decomposition with
 * the wrong reduced shapes.  The rewrite spells it out with every
 * reduction keeping its dimensions: mean over the normalised axes, x -
 * mean, its square's mean (the biased variance), + eps, sqrt, divide, then
 * the elementwise weight and bias: ReduceMean, Sub, Pow, ReduceMean, Add,
 * Sqrt, Div, Mul, Add.  tensorrt before 8.6: the same at every opset.
 *
 * tensorrt and ncnn, group_norm: neither runs a group norm of its own, but
 * both run InstanceNormalization.  The rewrite reshapes (N, C, *) to
 * (N, G, C/G * prod(*)) with the constant shape [0, G, -1] (0 keeps the
 * batch dimension of the input, so the batch never enters a shape
 * computation), normalises each group with instance_norm (unit weight, zero
 * bias), reshapes back and applies the per-channel weight and bias as
 * (1, C, 1, ...) tensors.  ncnn's InstanceNorm needs a (C, H, W) blob, so
 * for ncnn the grouped tensor gets a trailing unit axis and the way back is
 * the constant shape [0, C, ..., -1] of the example; TensorRT reshapes back to
 * the input's own shape (Shape), so every dimension may be dynamic.
 */
#include "rw_util.h"

#define MAX_RANK 8

/* ------------------------------------------------------------------------ */
/* layer_norm                                                                */

/* Below opset 17, where torch itself leaves it to be done: torch 1.x's
 * TorchScript exporter (the wrong reduced shapes), and torch.export's,
 * which builds at 18 with LayerNormalization and cannot convert it down.
 * torch 2.x's TorchScript exporter writes the same decomposition itself
 * (the zoo: 2.14's files of EdgeNeXt, EfficientFormer and Swin at opset
 * 11 are the same to OpenVINO plain and under torchrw), so the rewrite
 * would change nothing an engine needs there. */
static int below_opset_17(const trw_env *env)
{
  return trw_env_opset(env) < 17 &&
         (!trw_env_torch_at_least(env, 2, 0) ||
          trw_env_exporter(env) == TRW_EXPORTER_TORCH_EXPORT);
}

static int layer_norm_decomposed(trw_ctx *ctx, size_t nargs,
                                 trw_value *const args[], trw_value **result)
{
  const trw_tensor *x = nargs == 6 ? trw_value_tensor(args[0]) : NULL;
  int64_t shape[MAX_RANK];
  size_t nshape = 0;
  double eps;
  if (!x || !rw_is_float(trw_tensor_dtype(x)) ||
      trw_get_ints(args[1], shape, MAX_RANK, &nshape) != 0 || nshape == 0 ||
      (int)nshape > trw_tensor_dim(x) || trw_get_double(args[4], &eps) != 0)
    return trw_decline(ctx, nargs, args, result, "not a floating tensor with a normalized shape of at most its rank");

  int64_t axes[MAX_RANK];
  for (size_t i = 0; i < nshape; i++)
    axes[i] = (int64_t)i - (int64_t)nshape;
  trw_value *axes_v = trw_ints(ctx, axes, nshape);

  trw_value *mean = NULL, *centred = NULL, *square = NULL, *var = NULL;
  trw_value *var_eps = NULL, *std = NULL, *y = NULL;
  RW_CALL(mean, "aten::mean.dim", args[0], axes_v, RW_B(1), RW_NONE);
  RW_CALL(centred, "aten::sub.Tensor", args[0], mean, RW_I(1));
  RW_CALL(square, "aten::pow.Tensor_Scalar", centred, RW_D(2.0));
  RW_CALL(var, "aten::mean.dim", square, axes_v, RW_B(1), RW_NONE);
  RW_CALL(var_eps, "aten::add.Scalar", var, RW_D(eps), RW_I(1));
  RW_CALL(std, "aten::sqrt", var_eps);
  RW_CALL(y, "aten::div.Tensor", centred, std);
  if (!trw_is_none(args[2]))
    RW_CALL(y, "aten::mul.Tensor", y, args[2]);
  if (!trw_is_none(args[3]))
    RW_CALL(y, "aten::add.Tensor", y, args[3], RW_I(1));
  *result = y;
  return 0;
}

TRW_FUNCTION_REWRITER_EX("torch.layer_norm", "default", TRW_IR_ONNX,
                         layer_norm_decomposed, below_opset_17);
/* TensorRT's parser has LayerNormalization from 8.6 (onnx-tensorrt's
 * docs/operators.md at 6872a94, data/backends/tensorrt-8.6.json); 8.5's
 * has none at any opset (tensorrt-8.5.json), so for it the decomposition
 * holds at opset 17 and above too. */
TRW_FUNCTION_REWRITER_EX("torch.layer_norm", "tensorrt:<8.6", TRW_IR_ONNX,
                         layer_norm_decomposed);
/* check: 8.5's table has no LayerNormalization. */
TRW_FIXES("torch.layer_norm", "tensorrt:<8.6", "LayerNormalization", "operator is not supported");

/* ------------------------------------------------------------------------ */
/* group_norm through instance_norm                                          */

/* aten::reshape(x, shape) whose exported shape is `exported` instead: the
 * trace computes with the example's sizes, the graph keeps 0 for "the
 * input's size" where the example's size was used. */
static int reshape_exported(trw_ctx *ctx, trw_value *x, const int64_t *shape,
                            const int64_t *exported, size_t n, trw_value **out)
{
  RW_CALL(*out, "aten::reshape", x, trw_ints(ctx, shape, n));
  return trw_trace_set_input(ctx, *out, 1, trw_ints(ctx, exported, n));
}

static int group_norm_instance(trw_ctx *ctx, size_t nargs,
                               trw_value *const args[], trw_value **result,
                               int for_ncnn)
{
  const trw_tensor *x = nargs == 6 ? trw_value_tensor(args[0]) : NULL;
  int rank = x ? trw_tensor_dim(x) : -1;
  int64_t groups, sizes[MAX_RANK];
  double eps;
  if (!x || rank < 3 || rank > MAX_RANK || !rw_is_float(trw_tensor_dtype(x)) ||
      trw_get_int(args[1], &groups) != 0 || groups <= 0 ||
      trw_get_double(args[4], &eps) != 0)
    return trw_decline(ctx, nargs, args, result, "not a floating tensor of 3 to 8 dims with positive groups");
  for (int i = 0; i < rank; i++)
    if (trw_tensor_size(x, i, &sizes[i]) != 0)
      return trw_decline(ctx, nargs, args, result, "a dim is dynamic (torch.export)");
  if (sizes[0] == 0 || sizes[1] % groups != 0)
    return trw_decline(ctx, nargs, args, result, "an empty batch, or channels not divisible by groups");

  int64_t per_group = 1;
  for (int i = 1; i < rank; i++)
    per_group *= sizes[i];
  per_group /= groups;

  /* (N, C, *) -> (N, G, L) [-> (N, G, L, 1) for ncnn]. */
  int64_t grouped[4] = {sizes[0], groups, per_group, 1};
  int64_t grouped_exported[4] = {0, groups, -1, 1};
  trw_value *g = NULL;
  RW_CHECK(reshape_exported(ctx, args[0], grouped, grouped_exported,
                            for_ncnn ? 4 : 3, &g));

  trw_value *ones = NULL, *zeros = NULL, *normed = NULL;
  trw_value *dtype = trw_dtype_value(ctx, trw_tensor_dtype(x));
  RW_CALL(ones, "aten::ones", RW_INTS(groups), dtype);
  RW_CALL(zeros, "aten::zeros", RW_INTS(groups), dtype);
  RW_CALL(normed, "aten::instance_norm", g, ones, zeros, RW_NONE, RW_NONE,
          RW_B(1), RW_D(0.1), RW_D(eps), RW_B(0));

  trw_value *y = NULL;
  if (for_ncnn) {
    int64_t back_exported[MAX_RANK];
    /* torch's shape inference wants a -1 beside a 0: the last axis. */
    for (int i = 0; i < rank; i++)
      back_exported[i] = i == 0 ? 0 : i == rank - 1 ? -1 : sizes[i];
    RW_CHECK(reshape_exported(ctx, normed, sizes, back_exported, (size_t)rank, &y));
  } else {
    RW_CALL(y, "aten::reshape_as", normed, args[0]);
  }

  /* The per-channel affine part, broadcast as (1, C, 1, ...). */
  int64_t channel_shape[MAX_RANK];
  for (int i = 0; i < rank; i++)
    channel_shape[i] = i == 1 ? sizes[1] : 1;
  trw_value *channel = trw_ints(ctx, channel_shape, (size_t)rank);
  if (!trw_is_none(args[2])) {
    trw_value *w = NULL;
    RW_CALL(w, "aten::reshape", args[2], channel);
    RW_CALL(y, "aten::mul.Tensor", y, w);
  }
  if (!trw_is_none(args[3])) {
    trw_value *b = NULL;
    RW_CALL(b, "aten::reshape", args[3], channel);
    RW_CALL(y, "aten::add.Tensor", y, b, RW_I(1));
  }
  *result = y;
  return 0;
}

static int group_norm_tensorrt(trw_ctx *ctx, size_t nargs,
                               trw_value *const args[], trw_value **result)
{
  return group_norm_instance(ctx, nargs, args, result, 0);
}

static int group_norm_ncnn(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                           trw_value **result)
{
  return group_norm_instance(ctx, nargs, args, result, 1);
}

TRW_FUNCTION_REWRITER("torch.group_norm", "tensorrt", group_norm_tensorrt);
TRW_FUNCTION_REWRITER("torch.group_norm", "ncnn", group_norm_ncnn);
