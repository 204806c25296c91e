/*
 * squeeze.c - the ONNX symbolic of aten::squeeze.
 *
 * x.squeeze() without a dim exports as a Squeeze with no axes, which
 * removes whatever dimensions are 1 at run time: the output rank is then
 * unknown when the graph is built, and TensorRT, ncnn and OpenVINO reject
 * or mis-shape it.  This symbolic squeezes the axes that are statically 1
 * in the traced example, so the output rank is fixed.  x.squeeze(d) on a
 * dimension of static size other than 1 is the identity, as in PyTorch.
 * Axes are an attribute below opset 13 and an input from 13 on.  Where
 * sizes are unknown the original symbolic runs.
 */
#include "torchrw.h"

#define MAX_RANK 32

static int squeeze_static(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                          trw_sym **result)
{
  int rank = trw_sym_rank(in[0]);
  if (rank < 0 || rank > MAX_RANK)
    return trw_decline_symbolic(ctx, g, nin, in, result,
                                "the input's rank is unknown (or above 32)");
  int64_t axes[MAX_RANK], size;
  size_t naxes = 0;
  if (nin >= 2 && !trw_sym_is_none(in[1])) {
    int64_t d;
    if (trw_sym_const_int(in[1], &d) != 0)
      return trw_decline_symbolic(ctx, g, nin, in, result, "the dim is not a constant int");
    if (d < 0)
      d += rank;
    if (d < 0 || d >= rank) /* torch's own says what is wrong */
      return trw_decline_symbolic(ctx, g, nin, in, result, "dim %lld is out of range for rank %d",
                                  (long long)d, rank);
    if (trw_sym_size(in[0], (int)d, &size) != 0)
      return trw_decline_symbolic(ctx, g, nin, in, result,
                                  "the size of dim %lld is not known statically", (long long)d);
    if (size == 1)
      axes[naxes++] = d;
  } else {
    for (int i = 0; i < rank; i++)
      if (trw_sym_size(in[0], i, &size) == 0 && size == 1)
        axes[naxes++] = i;
  }
  if (naxes == 0) {
    *result = in[0];
    return 0;
  }
  if (trw_ctx_opset(ctx) < 13) {
    trw_attr a = TRW_ATTR_INTS("axes", axes, naxes);
    *result = trw_g_op(ctx, g, "Squeeze", 1, in, &a, 1);
  } else {
    trw_sym *args[2] = {in[0], trw_g_const_ints(ctx, g, axes, naxes)};
    *result = args[1] ? trw_g_op(ctx, g, "Squeeze", 2, args, NULL, 0) : NULL;
  }
  return *result ? 0 : TRW_EOP;
}

TRW_SYMBOLIC_REWRITER("squeeze", "default", squeeze_static);
