/*
 * slice_scatter.c - the ONNX symbolic of aten::slice_scatter over an empty
 * region.
 *
 * torch.export functionalizes x[a:b] = v into slice_scatter(x, src, dim,
 * a, b), and on a region with no element (swin3d_t's shifted-window mask
 * assigns x[0:-7] on a dim of 7) src has a dim of size 0.  The exporter's
 * translation (onnxscript's aten_slice_scatter) writes a ScatterND whose
 * indices and updates, once folded, are constants of zero elements, which
 * OpenVINO's ONNX frontend reads as scalars and refuses ("Conversion is
 * failed for: ScatterND-11").  Scattering nothing leaves self as it is:
 * this symbolic returns self when src has a dim statically 0, and leaves
 * every other slice_scatter to the exporter's own.
 *
 * torch.export only: the TorchScript exporter traces the same assignment
 * as index_put (see index_put.c), and neither torch 1.13's nor 2.x's has a
 * symbolic of its own for an explicit aten::slice_scatter, so there would
 * be no original to hand the other calls to.
 */
#include "torchrw.h"

static int torch_export(const trw_env *env)
{
  return trw_env_exporter(env) == TRW_EXPORTER_TORCH_EXPORT;
}

/* aten::slice_scatter(Tensor self, Tensor src, int dim=0, SymInt?
 * start=None, SymInt? end=None, SymInt step=1) */
static int slice_scatter_empty(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                               trw_sym **result)
{
  int rank = nin >= 2 ? trw_sym_rank(in[1]) : -1;
  if (rank < 0)
    return trw_decline_symbolic(ctx, g, nin, in, result, "the rank of src is unknown");
  for (int d = 0; d < rank; d++) {
    int64_t size;
    if (trw_sym_size(in[1], d, &size) == 0 && size == 0) {
      *result = in[0];
      return 0;
    }
  }
  return trw_decline_symbolic(ctx, g, nin, in, result, "src has no dim statically 0");
}

TRW_SYMBOLIC_REWRITER_EX("aten::slice_scatter", "default", slice_scatter_empty, torch_export);
