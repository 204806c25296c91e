/*
 * resize.c - F.interpolate with size= for ncnn (aten::upsample_nearest2d.vec
 * and aten::upsample_bilinear2d.vec called with output_size).
 *
 * ncnn: ncnn's Interp layer reads constant scales; an ONNX Resize given
 * sizes (which torch computes from Shape, Slice and Concat when the script
 * passes size=) cannot be converted.  The rewrite records the same call
 * with scale_factors = output size / input size of the example and no
 * output_size, so the Resize has constant scales.  Each scale is the
 * smallest float32 at least the ratio for which floor(input * scale) is
 * the output size, as Resize computes its output size in float32.
 */
#include <math.h>

#include "rw_util.h"

/* The float32 scale that makes floor(in * scale) == out in float32. */
static double resize_scale(int64_t in, int64_t out)
{
  float s = (float)out / (float)in;
  while ((float)in * s < (float)out)
    s = nextafterf(s, INFINITY);
  return (double)s;
}

/* size_index and scales_index: the positions of output_size and
 * scale_factors in the overload's schema. */
static int size_to_scales(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                          trw_value **result, size_t size_index,
                          size_t scales_index)
{
  const trw_tensor *x = nargs > scales_index ? trw_value_tensor(args[0]) : NULL;
  int64_t out[2], in[2];
  size_t n = 0;
  if (!x || trw_tensor_dim(x) != 4 || !trw_is_none(args[scales_index]) ||
      trw_get_ints(args[size_index], out, 2, &n) != 0 || n != 2 ||
      trw_tensor_size(x, 2, &in[0]) != 0 || trw_tensor_size(x, 3, &in[1]) != 0 ||
      in[0] < 1 || in[1] < 1 || out[0] < 1 || out[1] < 1)
    return trw_decline(ctx, nargs, args, result,
                       "not a 4-D tensor of static size resized to a given 2-D size");

  /* The traced call computes with output_size (which also takes any sizes
   * torch's tracer stashed for it); the graph gets the scales. */
  double scales[2] = {resize_scale(in[0], out[0]), resize_scale(in[1], out[1])};
  RW_CHECK(trw_call_original(ctx, nargs, args, result));
  RW_CHECK(trw_trace_set_input(ctx, *result, size_index, RW_NONE));
  return trw_trace_set_input(ctx, *result, scales_index,
                             trw_doubles(ctx, scales, 2));
}

/* upsample_nearest2d.vec(input, output_size, scale_factors) */
static int nearest_size_to_scales(trw_ctx *ctx, size_t nargs,
                                  trw_value *const args[], trw_value **result)
{
  return size_to_scales(ctx, nargs, args, result, 1, 2);
}

/* upsample_bilinear2d.vec(input, output_size, align_corners, scale_factors) */
static int bilinear_size_to_scales(trw_ctx *ctx, size_t nargs,
                                   trw_value *const args[], trw_value **result)
{
  return size_to_scales(ctx, nargs, args, result, 1, 3);
}

TRW_FUNCTION_REWRITER("aten::upsample_nearest2d.vec", "ncnn",
                      nearest_size_to_scales);
TRW_FUNCTION_REWRITER("aten::upsample_bilinear2d.vec", "ncnn",
                      bilinear_size_to_scales);
