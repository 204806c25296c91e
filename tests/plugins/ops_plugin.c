/*
 * ops_plugin.c - a C plugin for the tests, built against torchrw.h alone.
 *
 * aten::neg (tensorrt) is rewritten as mul(x, -1), aten::mul.Scalar
 * (tensorrt) as the original mul followed by abs, and aten::abs (tensorrt)
 * as the original: a chain of rewriters calling operators that have
 * rewriters of their own.  aten::abs fails on purpose for tensors of 3
 * dimensions, and aten::sign loops on itself, so that the tests see how
 * failures reach the user.  aten::expm1 (tensorrt) needs its input's
 * last size as a constant and fails without one (a dimension torch.export
 * keeps symbolic), then doubles the result.
 */
#include "torchrw.h"

static int neg_as_mul(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                      trw_value **result)
{
  (void)nargs;
  trw_value *minus_one = trw_int(ctx, -1);
  return trw_call(ctx, "aten::mul.Scalar", 2, (trw_value *[]){args[0], minus_one},
                  result);
}
TRW_FUNCTION_REWRITER("aten::neg", "tensorrt", neg_as_mul);

static int mul_then_abs(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                        trw_value **result)
{
  trw_value *product = NULL;
  int rc = trw_call_original(ctx, nargs, args, &product);
  if (rc != 0)
    return rc;
  return trw_call(ctx, "aten::abs", 1, &product, result);
}
TRW_FUNCTION_REWRITER("aten::mul.Scalar", "tensorrt", mul_then_abs);

static int abs_refuses_3d(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                          trw_value **result)
{
  const trw_tensor *t = trw_value_tensor(args[0]);
  if (t && trw_tensor_dim(t) == 3)
    return trw_error(ctx, TRW_EINVAL, "3-D input is not supported by this test rewriter");
  return trw_call_original(ctx, nargs, args, result);
}
TRW_FUNCTION_REWRITER("torch.abs", "tensorrt", abs_refuses_3d);

static int sign_loops(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                      trw_value **result)
{
  return trw_call(ctx, "aten::sign", nargs, args, result);
}
TRW_FUNCTION_REWRITER("torch.sign", "default", sign_loops);

/* Reads the deployment config: scales by onnx_config.test_scale. */
static int exp_scaled(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                      trw_value **result)
{
  double scale = trw_cfg_get_double(trw_ctx_cfg(ctx), "onnx_config.test_scale", 1.0);
  trw_value *e = NULL;
  int rc = trw_call_original(ctx, nargs, args, &e);
  if (rc != 0)
    return rc;
  return trw_call(ctx, "aten::mul.Scalar", 2, (trw_value *[]){e, trw_double(ctx, scale)},
                  result);
}
TRW_FUNCTION_REWRITER("torch.exp", "onnxruntime", exp_scaled);

static int expm1_needs_last_size(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                               trw_value **result)
{
  const trw_tensor *t = trw_value_tensor(args[0]);
  int64_t n = 0;
  int rc = t ? trw_tensor_size(t, -1, &n) : TRW_ETYPE;
  if (rc != 0)
    return trw_error(ctx, rc, "the last dimension's size is not a constant");
  trw_value *e = NULL;
  rc = trw_call_original(ctx, nargs, args, &e);
  if (rc != 0)
    return rc;
  return trw_call(ctx, "aten::add.Tensor", 2, (trw_value *[]){e, e}, result);
}
TRW_FUNCTION_REWRITER("aten::expm1", "tensorrt", expm1_needs_last_size);
