/*
 * attention.c - scaled_dot_product_attention below opset 14.
 *
 * default: torch 2.x's nn.MultiheadAttention, F.multi_head_attention_forward
 * and most transformer code call F.scaled_dot_product_attention, and
 * torch's exporter has a symbolic for it only from opset 14 ("Exporting the
 * operator 'aten::scaled_dot_product_attention' to ONNX opset version 11
 * is not supported").  TensorRT and ncnn users often export at 11, so
 * every transformer failed there (torchvision's vit_b_16, swin's and
 * maxvit's attention write their own matmuls and were not affected).  The
 * rewrite is attention's definition in operators every opset has:
 *
 *   softmax(q @ k^T * scale + mask) @ v
 *
 * with scale 1/sqrt(E) computed from the query's last size in the graph
 * when not given, a float mask added, a bool mask (True: attend) and
 * is_causal's mask (column <= row, from aranges over the traced sequence
 * lengths) applied as -inf where masked (ncnn, which has no Where: added,
 * 0 where allowed and minus half the dtype's largest value where not).  No size of the example is
 * written into the graph, so batch, heads and sequence lengths stay
 * dynamic.  Left to the original, with the reason: dropout during
 * training (dropout_p > 0 exports a random mask), enable_gqa (key and
 * value heads repeated; torch 2.5 and later), and arguments of other
 * kinds than the schema's.
 */
#include <float.h>
#include <math.h>

#include "rw_util.h"

static int below_opset_14(const trw_env *env)
{
  return trw_env_opset(env) < 14 && trw_env_torch_at_least(env, 2, 0);
}

/* Half the largest finite value of a float dtype: what a masked score
 * gets subtracted (twice of it still finite). */
static double half_max(trw_dtype d)
{
  switch (d) {
  case TRW_DTYPE_FLOAT64:
    return DBL_MAX / 2;
  case TRW_DTYPE_FLOAT16:
    return 65504.0 / 2;
  default: /* float32, bfloat16 (whose largest is above FLT_MAX / 2) */
    return FLT_MAX / 2;
  }
}

/* scores masked where allowed (a bool tensor) is false: -inf there
 * (logical_not, masked_fill: Not and Where), or, additive, scores +
 * (float(allowed) - 1) * half_max: no Where, and a constant mask (a
 * causal one of static lengths, DETR's all-ones pixel mask) folds into
 * one constant that the scores are added to. */
static int mask_out(trw_ctx *ctx, trw_value *scores, trw_value *allowed, int additive,
                    trw_value **out)
{
  if (additive) {
    trw_dtype d = trw_tensor_dtype(trw_value_tensor(scores));
    trw_value *f = NULL, *shifted = NULL, *bias = NULL;
    RW_CHECK(rw_cast(ctx, allowed, d, &f));
    RW_CALL(shifted, "aten::sub.Scalar", f, RW_I(1), RW_I(1));
    RW_CALL(bias, "aten::mul.Scalar", shifted, RW_D(half_max(d)));
    RW_CALL(*out, "aten::add.Tensor", scores, bias, RW_I(1));
    return 0;
  }
  trw_value *masked = NULL;
  RW_CALL(masked, "aten::logical_not", allowed);
  RW_CALL(*out, "aten::masked_fill.Scalar", scores, masked, RW_D(-INFINITY));
  return 0;
}

/* is_causal's mask over q (L queries) and k (S keys): column <= row, as
 * torch builds it (ones(L, S).tril()), from the traced lengths. */
static int causal_allowed(trw_ctx *ctx, trw_value *q, int64_t l, trw_value *k,
                          int64_t s, trw_value **out)
{
  const trw_tensor *qt = trw_value_tensor(q), *kt = trw_value_tensor(k);
  trw_value *rows = NULL, *cols = NULL, *rows2 = NULL, *cols2 = NULL;
  if (trw_ctx_exporter(ctx) == TRW_EXPORTER_TORCH_EXPORT) {
    /* No traced lengths: the static ones (attend read them). */
    RW_CALL(rows, "aten::arange", RW_I(l));
    RW_CALL(cols, "aten::arange", RW_I(s));
  } else {
    RW_CHECK(rw_arange_of_dim(ctx, q, trw_tensor_dim(qt) - 2, l, &rows));
    RW_CHECK(rw_arange_of_dim(ctx, k, trw_tensor_dim(kt) - 2, s, &cols));
  }
  RW_CALL(rows2, "aten::unsqueeze", rows, RW_I(1));
  RW_CALL(cols2, "aten::unsqueeze", cols, RW_I(0));
  RW_CALL(*out, "aten::le.Tensor", cols2, rows2);
  return 0;
}

/* 1/sqrt(E), E the query's last size, computed in the graph; under
 * torch.export, which has no traced sizes to compute it from (the
 * original runs then), the constant of a static E. */
static int default_scale(trw_ctx *ctx, trw_value *q, trw_value *scores, trw_value **out)
{
  int64_t size;
  if (trw_ctx_exporter(ctx) == TRW_EXPORTER_TORCH_EXPORT &&
      trw_tensor_size(trw_value_tensor(q), -1, &size) == 0 && size > 0) {
    RW_CALL(*out, "aten::mul.Scalar", scores, RW_D(1.0 / sqrt((double)size)));
    return 0;
  }
  trw_value *e = NULL, *ef = NULL, *root = NULL, *factor = NULL;
  RW_CHECK(rw_size_tensor(ctx, q, trw_tensor_dim(trw_value_tensor(q)) - 1, &e));
  RW_CHECK(rw_cast(ctx, e, trw_tensor_dtype(trw_value_tensor(q)), &ef));
  RW_CALL(root, "aten::sqrt", ef);
  RW_CALL(factor, "aten::reciprocal", root);
  RW_CALL(*out, "aten::mul.Tensor", scores, factor);
  return 0;
}

static int attend(trw_ctx *ctx, size_t nargs, trw_value *const args[], int additive,
                  trw_value **result)
{
  const trw_tensor *q = nargs >= 3 ? trw_value_tensor(args[0]) : NULL;
  const trw_tensor *k = q ? trw_value_tensor(args[1]) : NULL;
  const trw_tensor *v = k ? trw_value_tensor(args[2]) : NULL;
  int64_t l, s;
  double dropout = 0.0, scale = 0.0;
  int causal = 0, gqa = 0;
  if (!v || trw_tensor_dim(q) < 2 || trw_tensor_dim(k) < 2 ||
      !rw_is_float(trw_tensor_dtype(q)) || trw_tensor_size(q, -2, &l) != 0 ||
      trw_tensor_size(k, -2, &s) != 0 ||
      (nargs > 3 && !trw_is_none(args[3]) && !trw_value_tensor(args[3])) ||
      (nargs > 4 && trw_get_double(args[4], &dropout) != 0) ||
      (nargs > 5 && trw_get_bool(args[5], &causal) != 0) ||
      (nargs > 6 && !trw_is_none(args[6]) && trw_get_double(args[6], &scale) != 0) ||
      (nargs > 7 && trw_get_bool(args[7], &gqa) != 0))
    return trw_decline(ctx, nargs, args, result,
                       "not float query, key and value of 2 dims or more with the schema's "
                       "mask, dropout, is_causal and scale");
  if (dropout > 0.0)
    return trw_decline(ctx, nargs, args, result, "dropout_p > 0 (training) exports a random mask");
  if (gqa)
    return trw_decline(ctx, nargs, args, result, "enable_gqa repeats key and value heads");
  const trw_tensor *mask = nargs > 3 ? trw_value_tensor(args[3]) : NULL;
  if (mask && causal)
    return trw_decline(ctx, nargs, args, result, "both a mask and is_causal (torch refuses them)");

  trw_value *kt = NULL, *scores = NULL, *scaled = NULL;
  trw_value *weights = NULL;
  RW_CALL(kt, "aten::transpose.int", args[1], RW_I(-2), RW_I(-1));
  RW_CALL(scores, "aten::matmul", args[0], kt);
  if (nargs > 6 && !trw_is_none(args[6])) {
    RW_CALL(scaled, "aten::mul.Scalar", scores, RW_D(scale));
  } else {
    RW_CHECK(default_scale(ctx, args[0], scores, &scaled));
  }
  scores = scaled;
  if (mask && trw_tensor_dtype(mask) == TRW_DTYPE_BOOL) {
    RW_CHECK(mask_out(ctx, scores, args[3], additive, &scaled));
    scores = scaled;
  } else if (mask) {
    RW_CALL(scaled, "aten::add.Tensor", scores, args[3], RW_I(1));
    scores = scaled;
  } else if (causal) {
    trw_value *allowed = NULL;
    RW_CHECK(causal_allowed(ctx, args[0], l, args[1], s, &allowed));
    RW_CHECK(mask_out(ctx, scores, allowed, additive, &scaled));
    scores = scaled;
  }
  RW_CALL(weights, "aten::softmax.int", scores, RW_I(-1), RW_NONE);
  RW_CALL(*result, "aten::matmul", weights, args[2]);
  return 0;
}

static int attention_by_matmul(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                               trw_value **result)
{
  return attend(ctx, nargs, args, 0, result);
}
TRW_FUNCTION_REWRITER_EX("aten::scaled_dot_product_attention", "default", TRW_IR_ONNX,
                         attention_by_matmul, below_opset_14);

/* ncnn has no Where (nor Not, nor bool tensors): a bool mask, or
 * is_causal's, is added to the scores.  At every opset under torch.export's
 * exporter too: its translation at 18 guards the softmax with IsNaN and
 * Where, which ncnn has no layer for (HF ViT, DETR: "layer IsNaN not
 * exists or registered").  The TorchScript exporter's own symbolic from
 * opset 14 is left as it is. */
static int ncnn_attention(const trw_env *env)
{
  return below_opset_14(env) || trw_env_exporter(env) == TRW_EXPORTER_TORCH_EXPORT;
}

static int attention_additive_mask(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                                   trw_value **result)
{
  return attend(ctx, nargs, args, 1, result);
}
TRW_FUNCTION_REWRITER_EX("aten::scaled_dot_product_attention", "ncnn", TRW_IR_ONNX,
                         attention_additive_mask, ncnn_attention);
