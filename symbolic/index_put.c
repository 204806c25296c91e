/*
 * index_put.c - the ONNX symbolic of aten::index_put over an empty region.
 *
 * x[a:b] = v on a region with no element (swin3d_t's shifted-window mask
 * assigns x[0:-7] on a dim of 7) reaches the exporter as index_put with an
 * index of no element.  torch's symbolic (opset 11 on) reshapes v to the
 * region's shape; once that shape is a constant with a 0, as it is when
 * the sizes are constants (ncnn's size rewriters make them so), torch's
 * own shape inference fails on the Reshape ("There are no examples for
 * shape_has_zero = true && minus_one_pos == -1", shape_type_inference.cpp).
 * Putting nothing leaves x as it is: this symbolic returns x when an index
 * has a dim statically 0, and leaves every other index_put to torch's.
 */
#include "torchrw.h"

#define MAX_INDICES 32

/* aten::index_put(Tensor self, Tensor?[] indices, Tensor values,
 * bool accumulate=False) */
static int index_put_empty(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                           trw_sym **result)
{
  trw_sym *indices[MAX_INDICES];
  size_t n = 0;
  if (nin != 4 || trw_sym_list(g, in[1], indices, MAX_INDICES, &n) != 0)
    return trw_decline_symbolic(ctx, g, nin, in, result,
                                "the indices are not a list of at most 32");
  for (size_t i = 0; i < n; i++) {
    int rank = trw_sym_is_none(indices[i]) ? -1 : trw_sym_rank(indices[i]);
    for (int d = 0; d < rank; d++) {
      int64_t size;
      if (trw_sym_size(indices[i], d, &size) == 0 && size == 0) {
        *result = in[0];
        return 0;
      }
    }
  }
  return trw_decline_symbolic(ctx, g, nin, in, result, "no index is statically empty");
}

TRW_SYMBOLIC_REWRITER("aten::index_put", "default", index_put_empty);
