/* old_api_plugin.c - a plugin whose registration says it was built for
 * another torchrw API version (as one built against an older or newer
 * header would): loading it must fail the export, naming the plugin and
 * both versions, without reading the rest of the definition. */
#include "torchrw.h"

static int noop(trw_ctx *ctx, size_t nargs, trw_value *const args[], trw_value **result)
{
  return trw_call_original(ctx, nargs, args, result);
}

__attribute__((constructor)) static void register_as_version_1(void)
{
  static const trw_rewriter_def def = {.size = sizeof def,
                                       .api_version = 1,
                                       .kind = TRW_KIND_FUNCTION,
                                       .name = "torch.exp",
                                       .fn = (void *)noop,
                                       .file = __FILE__,
                                       .line = __LINE__};
  (void)trw_register(&def);
}
