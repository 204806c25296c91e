/*
 * embedding_ncnn.c - the ONNX symbolic of aten::embedding for ncnn under
 * torch.export's exporter.
 *
 * pnnx turns a Gather of a constant table by run-time indices into an
 * embedding (ncnn's Embed) only when the Gather sets no axis attribute:
 * torch's TorchScript exporter leaves it out, torch.export's translation
 * (onnxscript's aten_embedding) writes axis=0, and pnnx then leaves the
 * Gather without an ncnn layer ("layer Gather not exists or registered";
 * data/backends/ncnn.json's Gather rule).  Every token embedding of a
 * transformer and mask_ncnn.c's mask lookup meet it.  This symbolic writes
 * the same Gather with the default axis left implicit.
 *
 * torch.export only: the TorchScript exporter's own symbolic already
 * writes it so.
 */
#include "torchrw.h"

static int torch_export(const trw_env *env)
{
  return trw_env_exporter(env) == TRW_EXPORTER_TORCH_EXPORT;
}

/* aten::embedding(Tensor weight, Tensor indices, SymInt padding_idx=-1,
 * bool scale_grad_by_freq=False, bool sparse=False) */
static int embedding_gather(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                            trw_sym **result)
{
  if (nin < 2)
    return trw_decline_symbolic(ctx, g, nin, in, result, "not (weight, indices, ...)");
  trw_sym *args[2] = {in[0], in[1]};
  *result = trw_g_op(ctx, g, "Gather", 2, args, NULL, 0);
  return *result ? 0 : TRW_EOP;
}

TRW_SYMBOLIC_REWRITER_EX("aten::embedding", "ncnn", embedding_gather, torch_export);
/* check: pnnx makes an Embed only of a Gather without an axis attribute. */
TRW_FIXES("aten::embedding", "ncnn", "Gather", "input 1 ");
