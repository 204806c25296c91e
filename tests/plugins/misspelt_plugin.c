/* misspelt_plugin.c - a rewriter of an operator no torch has: the first
 * trace must fail the export, naming the registration site. */
#include "torchrw.h"

static int noop(trw_ctx *ctx, size_t nargs, trw_value *const args[], trw_value **result)
{
  return trw_call_original(ctx, nargs, args, result);
}
TRW_FUNCTION_REWRITER("aten::repaet", "tensorrt", noop);
