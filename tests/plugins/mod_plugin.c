/*
 * mod_plugin.c - C module rewriters for the tests, built against torchrw.h
 * alone: reading attributes and parameters, calling submodules, calling
 * the original forward.
 */
#include <string.h>

#include "torchrw.h"

/* userpkg.models.SRCNN, redone in C with a bilinear upsampler: reads the
 * int attribute upscale_factor, the string img_upsampler.mode and the bool
 * training, and calls the convolutions and ReLU as submodules. */
static int srcnn_bilinear(trw_ctx *ctx, trw_module *m, size_t nargs, trw_value *const args[],
                          trw_value **result)
{
  int64_t factor;
  const char *mode;
  int training;
  int rc;
  if (nargs != 1 || (rc = trw_module_int(ctx, m, "upscale_factor", &factor)) != 0 ||
      (rc = trw_module_string(ctx, m, "img_upsampler.mode", &mode)) != 0 ||
      (rc = trw_module_bool(ctx, m, "training", &training)) != 0)
    return nargs != 1 ? trw_call_original_forward(ctx, m, nargs, args, result) : rc;
  if (strcmp(mode, "nearest") != 0 || training)
    return trw_call_original_forward(ctx, m, nargs, args, result);
  double scales[2] = {(double)factor, (double)factor};
  /* upsample_bilinear2d.vec(input, output_size, align_corners, scale_factors) */
  trw_value *up = NULL, *h = NULL;
  trw_value *up_args[4] = {args[0], trw_none(ctx), trw_bool(ctx, 0), trw_doubles(ctx, scales, 2)};
  if ((rc = trw_call(ctx, "aten::upsample_bilinear2d.vec", 4, up_args, &up)) != 0)
    return rc;
  static const char *const steps[] = {"conv1", "relu", "conv2", "relu", "conv3"};
  h = up;
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
    if ((rc = trw_module_call(ctx, m, steps[i], 1, &h, &h)) != 0)
      return rc;
  *result = h;
  return 0;
}
TRW_MODULE_REWRITER("userpkg.models.SRCNN", "ncnn", srcnn_bilinear);

/* userpkg.models.Base: asks for an attribute it does not have. */
static int base_missing(trw_ctx *ctx, trw_module *m, size_t nargs, trw_value *const args[],
                        trw_value **result)
{
  (void)nargs, (void)args, (void)result;
  double gain;
  return trw_module_double(ctx, m, "gain_that_is_not_there", &gain);
}
TRW_MODULE_REWRITER("userpkg.models.Base", "ncnn", base_missing);
