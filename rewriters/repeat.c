/*
 * repeat.c - Tensor.repeat.
 *
 * tensorrt: TensorRT's ONNX parser cannot Tile a 1-D tensor by a single
 * repeat count exported from x.repeat(n) (mmdeploy's first example).  Make
 * it 2-D around the repeat: unsqueeze(0), repeat([1, n]), squeeze(0).
 */
#include "torchrw.h"

static int repeat_static(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                         trw_value **result)
{
  if (nargs != 2)
    return trw_decline(ctx, nargs, args, result, "not repeat(Tensor, int[])");
  const trw_tensor *self = trw_value_tensor(args[0]);
  int64_t reps[1];
  size_t nreps = 0;
  int rc = trw_get_ints(args[1], reps, 1, &nreps);
  if (!self || trw_tensor_dim(self) != 1 || rc != 0 || nreps != 1)
    return trw_decline(ctx, nargs, args, result, "not one repeat count for a 1-D tensor");
  /* A count computed from traced sizes would be pinned by the new list. */
  if (trw_trace_arg_is_constant(ctx, 1) != 1)
    return trw_decline(ctx, nargs, args, result,
                       "the repeat count is computed from traced sizes");

  int64_t tiled[2] = {1, reps[0]};
  trw_value *zero = trw_int(ctx, 0);
  trw_value *two_d = NULL, *repeated = NULL;
  if (!zero)
    return trw_error(ctx, TRW_ENOMEM, "out of memory");
  if ((rc = trw_call(ctx, "aten::unsqueeze", 2, (trw_value *[]){args[0], zero},
                     &two_d)) != 0)
    return rc;
  if ((rc = trw_call_original(ctx, 2, (trw_value *[]){two_d, trw_ints(ctx, tiled, 2)},
                              &repeated)) != 0)
    return rc;
  return trw_call(ctx, "aten::squeeze.dim", 2, (trw_value *[]){repeated, zero},
                  result);
}

TRW_FUNCTION_REWRITER("torch.Tensor.repeat", "tensorrt", repeat_static);
