/*
 * math.c - torch.atan2, torch.any, and % and fmod for TensorRT.
 *
 * default, atan2: torch 1.13 cannot export aten::atan2 before opset 16
 * (and ONNX has no Atan2).  mmdeploy's replacement, atan(y / (x + 1e-6)),
 * loses the quadrant: it is off by pi whenever x < 0.  The rewrite is exact
 * in all four quadrants and on the axes: atan(y / x) where x > 0, that plus
 * or minus pi (the sign of y) where x < 0, and sign(y) * pi / 2 where
 * x == 0 (0 at the origin).  The division by zero on the y axis is never
 * selected.  Signed zeros are not distinguished: atan2(-0.0, -1) gives pi.
 *
 * default, any: torch 1.13 exports aten::any by casting the input to int64
 * and summing, so any() of a float tensor whose nonzero values are all in
 * (-1, 1) comes out False.  The rewrite compares with zero first
 * (x != 0), then sums as int64 and tests > 0, for every dtype.
 *
 * tensorrt, remainder (%) and fmod: TensorRT has no Mod, which torch emits
 * for integer % and for every fmod.  The rewrite computes both from
 * division: fmod(a, b) = a - trunc(a / b) * b (the sign of a) and
 * remainder(a, b) = a - floor(a / b) * b (the sign of b); for integers
 * remainder is fmod plus b where fmod is nonzero and its sign differs
 * from b's.  Integer division in ONNX truncates, as fmod needs.
 *
 * tensorrt, floor division of integers (//, floor_divide, div with
 * rounding_mode="floor"): torch fixes up the truncating Div with a Mod.
 * The rewrite subtracts one from the truncated quotient where the
 * remainder is nonzero and its sign differs from the divisor's (torchvision
 * computes anchor strides and class indices this way).
 */
#include <string.h>

#include "rw_util.h"

static const double PI = 3.14159265358979323846;

/* ------------------------------------------------------------------------ */
/* atan2                                                                     */

static int atan2_quadrants(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                           trw_value **result)
{
  if (nargs != 2)
    return trw_decline(ctx, nargs, args, result, "not atan2(Tensor, Tensor)");
  const trw_tensor *yt = trw_value_tensor(args[0]);
  const trw_tensor *xt = trw_value_tensor(args[1]);
  if (!yt || !xt || !rw_is_float(trw_tensor_dtype(yt)) ||
      trw_tensor_dtype(yt) != trw_tensor_dtype(xt))
    return trw_decline(ctx, nargs, args, result, "the operands are not floating tensors of one dtype");
  trw_dtype dtype = trw_tensor_dtype(yt);
  trw_value *y = args[0], *x = args[1];

  /* Where x > 0: atan(y / x). */
  trw_value *ratio = NULL, *base = NULL;
  RW_CALL(ratio, "aten::div.Tensor", y, x);
  RW_CALL(base, "aten::atan", ratio);

  /* Where x < 0: base + pi for y >= 0, base - pi for y < 0. */
  trw_value *y_nonneg = NULL, *y_nonneg_f = NULL, *twice = NULL, *shift = NULL;
  trw_value *left = NULL;
  RW_CALL(y_nonneg, "aten::ge.Scalar", y, RW_I(0));
  RW_CHECK(rw_cast(ctx, y_nonneg, dtype, &y_nonneg_f));
  RW_CALL(twice, "aten::mul.Scalar", y_nonneg_f, RW_D(2.0 * PI));
  RW_CALL(shift, "aten::sub.Scalar", twice, RW_D(PI), RW_I(1));
  RW_CALL(left, "aten::add.Tensor", base, shift, RW_I(1));

  /* Where x == 0: sign(y) * pi / 2. */
  trw_value *sign = NULL, *axis = NULL;
  RW_CALL(sign, "aten::sign", y);
  RW_CALL(axis, "aten::mul.Scalar", sign, RW_D(PI / 2.0));

  trw_value *x_neg = NULL, *x_pos = NULL, *not_right = NULL;
  RW_CALL(x_neg, "aten::lt.Scalar", x, RW_I(0));
  RW_CALL(x_pos, "aten::gt.Scalar", x, RW_I(0));
  RW_CALL(not_right, "aten::where.self", x_neg, left, axis);
  RW_CALL(*result, "aten::where.self", x_pos, base, not_right);
  return 0;
}

TRW_FUNCTION_REWRITER_EX("torch.atan2", "default", TRW_IR_ONNX, atan2_quadrants);

/* ------------------------------------------------------------------------ */
/* any                                                                       */

static int any_nonzero(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                       trw_value **result)
{
  const trw_tensor *self = nargs >= 1 ? trw_value_tensor(args[0]) : NULL;
  int64_t dim = 0;
  int keepdim = 0;
  /* aten::any(self) or aten::any.dim(self, dim, keepdim); the Dimname
   * overload has a string-like dim and is left alone. */
  int reduce_all = nargs == 1;
  if (!self || trw_tensor_dtype(self) == TRW_DTYPE_UNKNOWN ||
      (!reduce_all && (nargs != 3 || trw_get_int(args[1], &dim) != 0 ||
                       trw_get_bool(args[2], &keepdim) != 0)))
    return trw_decline(ctx, nargs, args, result, "not any(x) or any(x, int dim, keepdim) on a tensor");

  trw_value *nonzero = NULL, *count = NULL, *sum = NULL;
  if (trw_tensor_dtype(self) == TRW_DTYPE_BOOL)
    nonzero = args[0];
  else
    RW_CALL(nonzero, "aten::ne.Scalar", args[0], RW_I(0));
  RW_CHECK(rw_cast(ctx, nonzero, TRW_DTYPE_INT64, &count));
  if (reduce_all)
    RW_CALL(sum, "aten::sum", count, RW_NONE);
  else
    RW_CALL(sum, "aten::sum.dim_IntList", count, RW_INTS(dim), RW_B(keepdim),
            RW_NONE);
  RW_CALL(*result, "aten::gt.Scalar", sum, RW_I(0));
  return 0;
}

TRW_FUNCTION_REWRITER_EX("torch.any", "default", TRW_IR_ONNX, any_nonzero);

/* ------------------------------------------------------------------------ */
/* remainder and fmod without Mod                                            */

/* The divisor as a tensor: args[1] itself, or a 0-dim tensor of self's
 * dtype holding the scalar.  NULL when the pair is not one the rewrite
 * handles (mixed dtypes, or a float scalar with an integer tensor: torch
 * would promote the result). */
static int mod_operands(trw_ctx *ctx, trw_value *const args[], trw_dtype *dtype,
                        trw_value **divisor)
{
  const trw_tensor *a = trw_value_tensor(args[0]);
  *divisor = NULL;
  if (!a)
    return 0;
  *dtype = trw_tensor_dtype(a);
  if (*dtype == TRW_DTYPE_UNKNOWN || *dtype == TRW_DTYPE_BOOL)
    return 0;
  const trw_tensor *b = trw_value_tensor(args[1]);
  if (b) {
    if (trw_tensor_dtype(b) != *dtype)
      return 0;
    *divisor = args[1];
    return 0;
  }
  trw_value_kind kind = trw_value_kind_of(args[1]);
  if (kind != TRW_VALUE_INT && !(kind == TRW_VALUE_DOUBLE && rw_is_float(*dtype)))
    return 0;
  trw_value *st_args[] = {args[1], trw_dtype_value(ctx, *dtype)};
  return trw_call(ctx, "aten::scalar_tensor", 2, st_args, divisor);
}

/* fmod(a, b) = a - trunc(a / b) * b in *out, and the quotient it used in
 * *quotient when that is not NULL. */
static int fmod_parts(trw_ctx *ctx, trw_value *a, trw_value *b, trw_dtype dtype,
                      trw_value **out, trw_value **quotient)
{
  trw_value *q = NULL, *prod = NULL;
  if (rw_is_float(dtype)) {
    /* trunc(q) = sign(q) * floor(|q|): ONNX has no Trunc before opset 22. */
    trw_value *ratio = NULL, *mag = NULL, *fl = NULL, *sign = NULL;
    RW_CALL(ratio, "aten::div.Tensor", a, b);
    RW_CALL(mag, "aten::abs", ratio);
    RW_CALL(fl, "aten::floor", mag);
    RW_CALL(sign, "aten::sign", ratio);
    RW_CALL(q, "aten::mul.Tensor", sign, fl);
  } else {
    /* Integer Div in ONNX truncates toward zero. */
    RW_CALL(q, "aten::div.Tensor_mode", a, b, trw_string(ctx, "trunc"));
  }
  RW_CALL(prod, "aten::mul.Tensor", q, b);
  RW_CALL(*out, "aten::sub.Tensor", a, prod, RW_I(1));
  if (quotient)
    *quotient = q;
  return 0;
}

/* 1 (in dtype) where the truncated remainder r is nonzero and its sign
 * differs from b's: where floor division and truncation part ways. */
static int floor_fix(trw_ctx *ctx, trw_value *r, trw_value *b, trw_dtype dtype,
                     trw_value **fix_n)
{
  trw_value *r_nonzero = NULL, *r_neg = NULL, *b_neg = NULL, *signs_differ = NULL;
  trw_value *fix = NULL;
  RW_CALL(r_nonzero, "aten::ne.Scalar", r, RW_I(0));
  RW_CALL(r_neg, "aten::lt.Scalar", r, RW_I(0));
  RW_CALL(b_neg, "aten::lt.Scalar", b, RW_I(0));
  RW_CALL(signs_differ, "aten::ne.Tensor", r_neg, b_neg);
  RW_CALL(fix, "aten::logical_and", r_nonzero, signs_differ);
  return rw_cast(ctx, fix, dtype, fix_n);
}

static int fmod_without_mod(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                            trw_value **result)
{
  trw_dtype dtype;
  trw_value *b = NULL;
  if (nargs != 2)
    return trw_decline(ctx, nargs, args, result, "not a binary call");
  RW_CHECK(mod_operands(ctx, args, &dtype, &b));
  if (!b)
    return trw_decline(ctx, nargs, args, result, "the operands are not a tensor with a divisor of its dtype (or an int)");
  return fmod_parts(ctx, args[0], b, dtype, result, NULL);
}

TRW_FUNCTION_REWRITER("torch.fmod", "tensorrt", fmod_without_mod);

static int remainder_without_mod(trw_ctx *ctx, size_t nargs,
                                 trw_value *const args[], trw_value **result)
{
  trw_dtype dtype;
  trw_value *b = NULL;
  if (nargs != 2)
    return trw_decline(ctx, nargs, args, result, "not a binary call");
  RW_CHECK(mod_operands(ctx, args, &dtype, &b));
  if (!b)
    return trw_decline(ctx, nargs, args, result, "the operands are not a tensor with a divisor of its dtype (or an int)");

  if (rw_is_float(dtype)) {
    trw_value *ratio = NULL, *fl = NULL, *prod = NULL;
    RW_CALL(ratio, "aten::div.Tensor", args[0], b);
    RW_CALL(fl, "aten::floor", ratio);
    RW_CALL(prod, "aten::mul.Tensor", fl, b);
    RW_CALL(*result, "aten::sub.Tensor", args[0], prod, RW_I(1));
    return 0;
  }

  /* Integers: r = fmod(a, b), plus b where r != 0 and (r < 0) != (b < 0). */
  trw_value *r = NULL, *fix_n = NULL, *add = NULL;
  RW_CHECK(fmod_parts(ctx, args[0], b, dtype, &r, NULL));
  RW_CHECK(floor_fix(ctx, r, b, dtype, &fix_n));
  RW_CALL(add, "aten::mul.Tensor", fix_n, b);
  RW_CALL(*result, "aten::add.Tensor", r, add, RW_I(1));
  return 0;
}

TRW_FUNCTION_REWRITER("torch.remainder", "tensorrt", remainder_without_mod);

/* ------------------------------------------------------------------------ */
/* Integer floor division without Mod                                        */

static int floor_div_ints(trw_ctx *ctx, trw_value *a, trw_value *b, trw_dtype dtype,
                          trw_value **result)
{
  /* floor(a / b) = trunc(a / b) - 1 where the remainder's sign is off. */
  trw_value *q = NULL, *r = NULL, *fix_n = NULL;
  RW_CHECK(fmod_parts(ctx, a, b, dtype, &r, &q));
  RW_CHECK(floor_fix(ctx, r, b, dtype, &fix_n));
  RW_CALL(*result, "aten::sub.Tensor", q, fix_n, RW_I(1));
  return 0;
}

/* floor_divide(a, b) and div(a, b, rounding_mode="floor") on integers. */
static int floor_divide_without_mod(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                                    trw_value **result)
{
  trw_dtype dtype;
  trw_value *b = NULL;
  const char *mode = NULL;
  if (nargs == 3 && (trw_get_string(args[2], &mode) != 0 || strcmp(mode, "floor") != 0))
    return trw_decline(ctx, nargs, args, result, "rounding mode is not floor");
  if (nargs != 2 && nargs != 3)
    return trw_decline(ctx, nargs, args, result, "not a binary call");
  RW_CHECK(mod_operands(ctx, args, &dtype, &b));
  if (!b || rw_is_float(dtype))
    return trw_decline(ctx, nargs, args, result, "not an integer tensor with a divisor of its dtype (or an int)");
  return floor_div_ints(ctx, args[0], b, dtype, result);
}

TRW_FUNCTION_REWRITER("torch.floor_divide", "tensorrt", floor_divide_without_mod);
TRW_FUNCTION_REWRITER("aten::div.Tensor_mode", "tensorrt", floor_divide_without_mod);
TRW_FUNCTION_REWRITER("aten::div.Scalar_mode", "tensorrt", floor_divide_without_mod);
