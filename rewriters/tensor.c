/*
 * tensor.c - triu and tril below opset 14, masked_fill with infinities,
 * zero_.
 *
 * default, triu and tril: ONNX has Trilu only from opset 14, and torch
 * 1.13 refuses to export aten::triu and aten::tril before it.  The rewrite
 * builds the mask from two aranges over the last two dimensions, computed
 * from the input's Shape (so the size may change at run time): column >=
 * row + diagonal for triu, <= for tril; the result is Where(mask, x, 0).
 * (mmdeploy multiplies by the mask instead, which turns inf and NaN
 * outside the triangle into NaN.)
 *
 * onnxruntime, masked_fill with -inf or inf: a row whose every element is
 * filled with -inf gives NaN in a following softmax (exp(-inf - -inf)),
 * and NaN then spreads through the rest of the model (mmdeploy met this in
 * SATRN).  The rewrite fills with the dtype's lowest (or highest) finite
 * value instead: rows that keep any element give exactly what -inf gives,
 * and a fully masked row gives a uniform softmax instead of NaN.
 *
 * default, zero_: torch 1.13's TorchScript exporter turns x.zero_() into
 * aten::zero, for which it has no symbolic at any opset ("Exporting the
 * operator 'aten::zero' to ONNX opset version 11 is not supported"); torch
 * 2.x has one.  The rewrite records x.fill_(0) instead, which every torch
 * exports (in place on a view too, as index_put), and which torch 2.x
 * exports as the same nodes as its own zero.  (x.mul_(0) would turn inf
 * and NaN into NaN.)  torch.export's exporter captures zero_ as the
 * functional aten::zero, which it translates itself.
 */
#include <float.h>
#include <math.h>

#include "rw_util.h"

/* ------------------------------------------------------------------------ */
/* triu and tril                                                             */

static int below_opset_14(const trw_env *env)
{
  return trw_env_opset(env) < 14;
}

static int triangle_by_mask(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                            trw_value **result, int upper)
{
  const trw_tensor *x = nargs == 2 ? trw_value_tensor(args[0]) : NULL;
  int rank = x ? trw_tensor_dim(x) : -1;
  int64_t diagonal, h, w;
  if (rank < 2 || trw_get_int(args[1], &diagonal) != 0 ||
      trw_tensor_size(x, -2, &h) != 0 || trw_tensor_size(x, -1, &w) != 0)
    return trw_decline(ctx, nargs, args, result,
                       "not a tensor of 2 dims or more with an int diagonal");
  if (trw_trace_arg_is_constant(ctx, 1) != 1)
    return trw_decline(ctx, nargs, args, result, "the diagonal is computed from traced sizes");

  trw_value *rows = NULL, *cols = NULL, *rows2 = NULL, *cols2 = NULL;
  trw_value *bound = NULL, *mask = NULL, *zeros = NULL;
  RW_CHECK(rw_arange_of_dim(ctx, args[0], rank - 2, h, &rows));
  RW_CHECK(rw_arange_of_dim(ctx, args[0], rank - 1, w, &cols));
  RW_CALL(rows2, "aten::unsqueeze", rows, RW_I(1));
  RW_CALL(cols2, "aten::unsqueeze", cols, RW_I(0));
  RW_CALL(bound, "aten::add.Scalar", rows2, RW_I(diagonal), RW_I(1));
  RW_CALL(mask, upper ? "aten::ge.Tensor" : "aten::le.Tensor", cols2, bound);
  RW_CALL(zeros, "aten::zeros_like", args[0]);
  RW_CALL(*result, "aten::where.self", mask, args[0], zeros);
  return 0;
}

static int triu_by_mask(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                        trw_value **result)
{
  return triangle_by_mask(ctx, nargs, args, result, 1);
}

static int tril_by_mask(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                        trw_value **result)
{
  return triangle_by_mask(ctx, nargs, args, result, 0);
}

TRW_FUNCTION_REWRITER_EX("torch.triu", "default", TRW_IR_ONNX, triu_by_mask,
                         below_opset_14);
TRW_FUNCTION_REWRITER_EX("torch.tril", "default", TRW_IR_ONNX, tril_by_mask,
                         below_opset_14);

/* ------------------------------------------------------------------------ */
/* masked_fill with finite extremes                                          */

/* The largest finite value of a floating dtype; 0 for others. */
static double finite_max(trw_dtype d)
{
  switch (d) {
  case TRW_DTYPE_FLOAT32: return FLT_MAX;
  case TRW_DTYPE_FLOAT64: return DBL_MAX;
  case TRW_DTYPE_FLOAT16: return 65504.0;
  case TRW_DTYPE_BFLOAT16: return 3.3895313892515355e38;
  default: return 0.0;
  }
}

static int masked_fill_finite(trw_ctx *ctx, size_t nargs,
                              trw_value *const args[], trw_value **result)
{
  const trw_tensor *x = nargs == 3 ? trw_value_tensor(args[0]) : NULL;
  double value, limit = x ? finite_max(trw_tensor_dtype(x)) : 0.0;
  /* Only a Scalar value can be read here; a tensor value is left alone. */
  if (limit == 0.0 || trw_value_kind_of(args[2]) != TRW_VALUE_DOUBLE ||
      trw_get_double(args[2], &value) != 0 || !isinf(value))
    return trw_decline(ctx, nargs, args, result,
                       "not a floating tensor filled with a constant infinity");
  trw_value *call_args[3] = {args[0], args[1], RW_D(value < 0 ? -limit : limit)};
  return trw_call_original(ctx, 3, call_args, result);
}

TRW_FUNCTION_REWRITER("torch.masked_fill", "onnxruntime", masked_fill_finite);
TRW_FUNCTION_REWRITER("torch.Tensor.masked_fill_", "onnxruntime",
                      masked_fill_finite);

/* ------------------------------------------------------------------------ */
/* zero_                                                                     */

static int torchscript_exporter(const trw_env *env)
{
  return trw_env_exporter(env) == TRW_EXPORTER_TORCHSCRIPT;
}

static int zero_as_fill(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                        trw_value **result)
{
  if (nargs != 1 || !trw_value_tensor(args[0]))
    return trw_decline(ctx, nargs, args, result, "not a tensor");
  RW_CALL(*result, "aten::fill_.Scalar", args[0], RW_I(0));
  return 0;
}

TRW_FUNCTION_REWRITER_EX("torch.Tensor.zero_", "default", TRW_IR_ONNX, zero_as_fill,
                         torchscript_exporter);
