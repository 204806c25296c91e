/*
 * linear.c - F.linear and nn.Linear (aten::linear) for ncnn.
 *
 * ncnn: ncnn runs ONNX Gemm as its InnerProduct, but torch exports linear
 * as Gemm only for a 2-D input with a bias; a 3-D or larger input becomes
 * MatMul and Add, which ncnn broadcasts differently from PyTorch
 * (mmdeploy).  The rewrite flattens the input to (-1, in_features), calls
 * linear on it (with a zero bias when there is none) so that torch exports
 * Gemm, and reshapes back with the constant shape [-1, ..., out] (the
 * example's sizes, -1 for the batch): the batch axis stays out of any
 * shape computation and may change at run time.  An input of more than 4
 * dims is left to the original: ncnn's blobs hold at most 4, and the
 * reshape back to 5 or more dims is one pnnx cannot convert (ncnn's table,
 * Reshape's max_elements), where the MatMul it replaces adds none.
 */
#include "rw_util.h"

#define MAX_RANK 4 /* ncnn's blobs */

static int linear_as_gemm(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                          trw_value **result)
{
  const trw_tensor *x = nargs == 3 ? trw_value_tensor(args[0]) : NULL;
  const trw_tensor *w = nargs == 3 ? trw_value_tensor(args[1]) : NULL;
  int rank = x ? trw_tensor_dim(x) : -1;
  int64_t sizes[MAX_RANK], out_features;
  if (rank > MAX_RANK)
    return trw_decline(ctx, nargs, args, result,
                       "a %d-D input: ncnn holds at most 4 dims, and a reshape back to %d would "
                       "not convert", rank, rank);
  if (!w || rank < 2 || trw_tensor_dim(w) != 2 ||
      !rw_is_float(trw_tensor_dtype(x)) ||
      trw_tensor_size(w, 0, &out_features) != 0 ||
      (rank == 2 && !trw_is_none(args[2])))
    return trw_decline(ctx, nargs, args, result, "%s",
                       rank == 2 ? "2-D with a bias is Gemm already"
                                 : "not a floating 3-D or 4-D input with a 2-D weight");
  for (int i = 0; i < rank; i++)
    if (trw_tensor_size(x, i, &sizes[i]) != 0)
      return trw_decline(ctx, nargs, args, result, "a dim is dynamic (torch.export)");

  trw_value *bias = args[2];
  if (trw_is_none(bias))
    RW_CALL(bias, "aten::zeros", RW_INTS(out_features),
            trw_dtype_value(ctx, trw_tensor_dtype(x)));
  trw_value *x2 = args[0], *y2 = NULL;
  if (rank > 2)
    RW_CALL(x2, "aten::reshape", args[0], RW_INTS(-1, sizes[rank - 1]));
  trw_value *call_args[3] = {x2, args[1], bias};
  RW_CHECK(trw_call_original(ctx, 3, call_args, &y2));
  if (rank == 2) {
    *result = y2;
    return 0;
  }
  int64_t shape[MAX_RANK];
  for (int i = 0; i < rank; i++)
    shape[i] = i == 0 ? -1 : i == rank - 1 ? out_features : sizes[i];
  RW_CALL(*result, "aten::reshape", y2, trw_ints(ctx, shape, (size_t)rank));
  return 0;
}

TRW_FUNCTION_REWRITER("aten::linear", "ncnn", linear_as_gemm);
