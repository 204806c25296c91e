/* bad_backend_plugin.c - a plugin whose registration names a backend that
 * does not exist: loading it must fail the export, naming the site. */
#include "torchrw.h"

static int noop(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                trw_value **result)
{
  return trw_call_original(ctx, nargs, args, result);
}
TRW_FUNCTION_REWRITER("torch.exp", "tensorrrt", noop);
