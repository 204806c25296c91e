/*
 * pooling.c - adaptive_avg_pool2d (F.adaptive_avg_pool2d).
 *
 * default: torch 1.13 exports adaptive average pooling only when it can
 * read the input's spatial size from the graph and the size divides
 * evenly; with dynamic axes (or sizes that do not divide) the export
 * fails.  The rewrite takes the spatial size from the example:
 *   - output (1, 1) stays the original (GlobalAveragePool, any size);
 *   - a size that divides the output size becomes avg_pool2d with the
 *     static kernel = stride = size / output (AveragePool);
 *   - otherwise, for outputs of up to 64 x 64, the adaptive windows
 *     [floor(i * H / oh), ceil((i + 1) * H / oh)) are averaged one output row
 *     (then column) at a time, since an average over a rectangle is the
 *     average of the row averages: Slice, ReduceMean and Concat.
 * The kernel (or windows) assume the example's spatial size at run time.
 */
#include "rw_util.h"

/* Beyond this many output cells along an axis, the window-by-window form
 * would be too large a graph: the original is kept. */
#define MAX_WINDOWS 64

/* Averages the adaptive windows of axis `dim` (size `size`) into `out`
 * cells and concatenates them along the axis. */
static int adaptive_axis(trw_ctx *ctx, trw_value *x, int dim, int64_t size,
                         int64_t out, trw_value **result)
{
  trw_value *cells[MAX_WINDOWS];
  for (int64_t i = 0; i < out; i++) {
    int64_t start = i * size / out;
    int64_t end = ((i + 1) * size + out - 1) / out;
    trw_value *window = NULL;
    RW_CALL(window, "aten::slice.Tensor", x, RW_I(dim), RW_I(start), RW_I(end),
            RW_I(1));
    RW_CALL(cells[i], "aten::mean.dim", window, RW_INTS(dim), RW_B(1), RW_NONE);
  }
  trw_value *list = trw_tensors(ctx, cells, (size_t)out);
  RW_CALL(*result, "aten::cat", list, RW_I(dim));
  return 0;
}

static int adaptive_avg_pool2d_static(trw_ctx *ctx, size_t nargs,
                                      trw_value *const args[],
                                      trw_value **result)
{
  const trw_tensor *x = nargs == 2 ? trw_value_tensor(args[0]) : NULL;
  int64_t os[2], h, w;
  size_t n = 0;
  int rank = x ? trw_tensor_dim(x) : -1;
  if ((rank != 3 && rank != 4) || trw_get_ints(args[1], os, 2, &n) != 0 ||
      n < 1 || trw_tensor_size(x, -2, &h) != 0 || trw_tensor_size(x, -1, &w) != 0)
    return trw_decline(ctx, nargs, args, result, "not a 3-D or 4-D tensor of static height and width with 1 or 2 "
                       "output sizes");
  if (trw_trace_arg_is_constant(ctx, 1) != 1)
    return trw_decline(ctx, nargs, args, result, "the output size is computed from traced sizes");
  if (n == 1)
    os[1] = os[0];
  if (os[0] == 1 && os[1] == 1)
    return trw_decline(ctx, nargs, args, result, "an output of 1x1 is already a global pool");
  if (os[0] < 1 || os[1] < 1 || h < 1 || w < 1)
    return trw_decline(ctx, nargs, args, result, "an empty input or output");

  /* AveragePool wants (N, C, H, W); a 3-D input takes the windows. */
  if (rank == 4 && h % os[0] == 0 && w % os[1] == 0) {
    int64_t kh = h / os[0], kw = w / os[1];
    RW_CALL(*result, "aten::avg_pool2d", args[0], RW_INTS(kh, kw),
            RW_INTS(kh, kw), RW_INTS(0, 0), RW_B(0), RW_B(1), RW_NONE);
    return 0;
  }
  if (os[0] > MAX_WINDOWS || os[1] > MAX_WINDOWS)
    return trw_decline(ctx, nargs, args, result, "more than 64 windows along a dim");
  trw_value *rows = NULL;
  RW_CHECK(adaptive_axis(ctx, args[0], rank - 2, h, os[0], &rows));
  return adaptive_axis(ctx, rows, rank - 1, w, os[1], result);
}

TRW_FUNCTION_REWRITER_EX("aten::adaptive_avg_pool2d", "default", TRW_IR_ONNX,
                         adaptive_avg_pool2d_static);
