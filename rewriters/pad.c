/*
 * pad.c - constant padding (F.pad with mode "constant", aten::pad and
 * aten::constant_pad_nd) for TensorRT.
 *
 * tensorrt: torch 1.13 builds the pads input of ONNX Pad at run time
 * (ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast), which
 * TensorRT's ONNX parser rejects ("Invalid Node - Pad", mmdeploy), and
 * TensorRT's own padding covers only the two innermost dimensions.  The
 * rewrite has no Pad at all: for each padded dimension it concatenates a
 * block of the fill value before and after the tensor (the block is a
 * one-wide slice filled with the value, tiled to the pad width, so the
 * other dimensions may stay dynamic), and it crops negative pads with
 * constant slices.  Pads the model computed from traced sizes (shifted
 * windows: `(7 - W % 7) % 7`) are left to the original: the concat would
 * pin them to the example's values (trw_trace_arg_is_constant).
 */
#include <string.h>

#include "rw_util.h"

#define MAX_PADS 16

/* A block of `width` along dim, filled with value, shaped like x
 * elsewhere. */
static int fill_block(trw_ctx *ctx, trw_value *x, int dim, int rank,
                      int64_t width, double value, trw_value **out)
{
  trw_value *edge = NULL, *filled = NULL;
  int64_t reps[8];
  for (int i = 0; i < rank; i++)
    reps[i] = i == dim ? width : 1;
  RW_CALL(edge, "aten::slice.Tensor", x, RW_I(dim), RW_I(0), RW_I(1), RW_I(1));
  RW_CALL(filled, "aten::full_like", edge, RW_D(value));
  RW_CALL(*out, "aten::repeat", filled, trw_ints(ctx, reps, (size_t)rank));
  return 0;
}

static int pad_by_concat(trw_ctx *ctx, trw_value *x, const int64_t *pads,
                         size_t npads, double value, trw_value **result)
{
  const trw_tensor *t = trw_value_tensor(x);
  int rank = trw_tensor_dim(t);
  trw_value *y = x;
  /* pads pairs run from the last dimension backwards. */
  for (size_t p = 0; p < npads / 2; p++) {
    int dim = rank - 1 - (int)p;
    int64_t before = pads[2 * p], after = pads[2 * p + 1], size;
    RW_CHECK(trw_tensor_size(trw_value_tensor(y), dim, &size));
    if (before < 0 || after < 0) {
      int64_t start = before < 0 ? -before : 0;
      int64_t end = after < 0 ? size + after : size;
      RW_CALL(y, "aten::slice.Tensor", y, RW_I(dim), RW_I(start), RW_I(end),
              RW_I(1));
    }
    trw_value *parts[3];
    size_t n = 0;
    if (before > 0)
      RW_CHECK(fill_block(ctx, y, dim, rank, before, value, &parts[n++]));
    parts[n++] = y;
    if (after > 0)
      RW_CHECK(fill_block(ctx, y, dim, rank, after, value, &parts[n++]));
    if (n > 1)
      RW_CALL(y, "aten::cat", trw_tensors(ctx, parts, n), RW_I(dim));
  }
  if (y == x)
    RW_CALL(y, "aten::clone", x, RW_NONE);
  *result = y;
  return 0;
}

/* NULL when the pads suit pad_by_concat for this call, or why not. */
static const char *pads_unusable(trw_ctx *ctx, const trw_tensor *t, const int64_t *pads,
                                 size_t npads)
{
  int rank = t ? trw_tensor_dim(t) : -1;
  if (trw_trace_arg_is_constant(ctx, 1) != 1)
    return "the pads are computed from traced sizes (the model read them from a "
           "tensor's shape while tracing); a constant rewrite would pin them to the "
           "example's";
  if (rank < 1 || rank > 8)
    return "the input is not a tensor of 1 to 8 dims";
  if (npads == 0 || npads % 2 != 0 || npads / 2 > (size_t)rank)
    return "the pads are not pairs for at most the input's dims";
  for (size_t p = 0; p < npads / 2; p++) {
    int64_t size;
    if (trw_tensor_size(t, rank - 1 - (int)p, &size) != 0)
      return "a padded dim is dynamic (torch.export)";
    if (size < 1 || pads[2 * p] + pads[2 * p + 1] + size < 1 || -pads[2 * p] >= size ||
        -pads[2 * p + 1] >= size)
      return "a padded dim is empty or cropped away";
  }
  return NULL;
}

/* aten::pad(self, pad, mode="constant", value=None) */
static int pad_constant(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                        trw_value **result)
{
  int64_t pads[MAX_PADS];
  size_t npads = 0;
  const char *mode = NULL, *why = NULL;
  double value = 0.0;
  if (nargs != 4 || trw_get_string(args[2], &mode) != 0 || strcmp(mode, "constant") != 0)
    return trw_decline(ctx, nargs, args, result, "mode '%s' is not constant padding",
                       mode ? mode : "?");
  if (trw_get_ints(args[1], pads, MAX_PADS, &npads) != 0)
    why = "the pads are not an int list of at most 16";
  else if (!trw_is_none(args[3]) && trw_get_double(args[3], &value) != 0)
    why = "the value is not a number";
  else
    why = pads_unusable(ctx, trw_value_tensor(args[0]), pads, npads);
  if (why)
    return trw_decline(ctx, nargs, args, result, "%s", why);
  return pad_by_concat(ctx, args[0], pads, npads, value, result);
}

/* aten::constant_pad_nd(self, pad, value=0) */
static int constant_pad_nd_concat(trw_ctx *ctx, size_t nargs,
                                  trw_value *const args[], trw_value **result)
{
  int64_t pads[MAX_PADS];
  size_t npads = 0;
  double value = 0.0;
  const char *why = NULL;
  if (nargs != 3 || trw_get_ints(args[1], pads, MAX_PADS, &npads) != 0)
    why = "the pads are not an int list of at most 16";
  else if (trw_get_double(args[2], &value) != 0)
    why = "the value is not a number";
  else
    why = pads_unusable(ctx, trw_value_tensor(args[0]), pads, npads);
  if (why)
    return trw_decline(ctx, nargs, args, result, "%s", why);
  return pad_by_concat(ctx, args[0], pads, npads, value, result);
}

TRW_FUNCTION_REWRITER("aten::pad", "tensorrt", pad_constant);
TRW_FUNCTION_REWRITER("torch.constant_pad_nd", "tensorrt", constant_pad_nd_concat);
