/*
 * frozen_bn.c - torchvision's FrozenBatchNorm2d (detection backbones).
 *
 * tensorrt: its forward spells the normalisation out (rsqrt, mul, sub,
 * mul, add), which the export keeps as a Mul and an Add after each
 * convolution.  As aten::batch_norm in inference mode it exports as
 * BatchNormalization, which torch.onnx folds into the preceding Conv: the
 * engine gets one fused convolution instead of three layers.
 */
#include "torchrw.h"

static int frozen_bn_as_batch_norm(trw_ctx *ctx, trw_module *m, size_t nargs,
                                   trw_value *const args[], trw_value **result)
{
  const trw_tensor *x = nargs == 1 ? trw_value_tensor(args[0]) : NULL;
  if (!x || trw_tensor_dim(x) != 4)
    return trw_call_original_forward(ctx, m, nargs, args, result);
  trw_value *weight, *bias, *mean, *var;
  double eps;
  int rc;
  if ((rc = trw_module_tensor(ctx, m, "weight", &weight)) != 0 ||
      (rc = trw_module_tensor(ctx, m, "bias", &bias)) != 0 ||
      (rc = trw_module_tensor(ctx, m, "running_mean", &mean)) != 0 ||
      (rc = trw_module_tensor(ctx, m, "running_var", &var)) != 0 ||
      (rc = trw_module_double(ctx, m, "eps", &eps)) != 0)
    return rc;
  /* batch_norm(input, weight, bias, mean, var, training, momentum, eps,
   *            cudnn_enabled) */
  trw_value *bn_args[9] = {args[0],          weight, bias, mean, var, trw_bool(ctx, 0),
                           trw_double(ctx, 0.0), trw_double(ctx, eps), trw_bool(ctx, 0)};
  return trw_call(ctx, "aten::batch_norm", 9, bn_args, result);
}

TRW_MODULE_REWRITER("torchvision.ops.misc.FrozenBatchNorm2d", "tensorrt",
                    frozen_bn_as_batch_norm);
