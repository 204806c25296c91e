/*
 * reduce_ncnn.c - reductions over one axis for ncnn, where the axes are
 * an input of the ONNX node: ReduceSum from opset 13, ReduceMean and
 * ReduceL2 from opset 18 (torch.export's exporter builds at 18).
 *
 * pnnx converts such a node only when its axes are two or more constants:
 * with one axis it drops the axes and ncnn gives back the input's shape
 * (measured: data/backends/ncnn.json's notes on ReduceMean, ReduceSum,
 * ReduceL2).  timm's EfficientFormer head (x.mean(dim=1)), EdgeNeXt's
 * F.normalize over one dim and any x.sum(dim) meet it.  The rewrite
 * reduces over the axis and a size-1 axis put after it, which is the same
 * reduction:
 *
 *   x.mean(d, keepdim)  ->  x.unsqueeze(d + 1).mean((d, d + 1), keepdim)
 *                           (.squeeze(d + 1) when keepdim)
 *
 * and the same for sum and linalg_vector_norm of order 2.  ncnn's blobs
 * have at most 4 dims, the batch among them (its ExpandDims of a 4-dim
 * blob fails to load: "layer load_param 4 unsqueeze_12 failed"), so inputs
 * of up to 3 dims are rewritten (transformer tokens, (N, L, C)); a call
 * over several axes, all of them, or a larger tensor goes to the
 * original.
 */
#include "rw_util.h"

#define MAX_DIMS 3 /* the input's; its unsqueezed copy has 4 */

static int opset_13_and_later(const trw_env *env) { return trw_env_opset(env) >= 13; }
static int opset_18_and_later(const trw_env *env) { return trw_env_opset(env) >= 18; }

/* The one axis of a reduction's dim argument, normalised against x's
 * rank; NULL when it applies, else why not. */
static const char *one_axis(const trw_tensor *x, const trw_value *dims, int *axis)
{
  int64_t d[2];
  size_t n = 0;
  int rank = x ? trw_tensor_dim(x) : -1;
  if (rank < 1)
    return "not a tensor of known rank";
  if (rank > MAX_DIMS)
    return "more than 3 dims (ncnn holds 4 with the batch, and the rewrite adds one)";
  if (trw_is_none(dims) || trw_get_ints(dims, d, 2, &n) != 0 || n != 1)
    return "not a reduction over exactly one axis";
  *axis = rw_dim(d[0], rank);
  return *axis < 0 ? "the axis is out of range" : NULL;
}

/* result = original(x.unsqueeze(axis + 1), [axis, axis + 1], rest...),
 * squeezed back at axis + 1 when keepdim; args[dim_at] is the dim list,
 * args[keep_at] keepdim. */
static int reduce_two_axes(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                           size_t dim_at, size_t keep_at, int axis, trw_value **result)
{
  int keepdim = 0;
  trw_value *wide = NULL, *reduced = NULL, *call[8];
  if (nargs > 8 || trw_get_bool(args[keep_at], &keepdim) != 0)
    return trw_decline(ctx, nargs, args, result, "keepdim is not a bool");
  RW_CALL(wide, "aten::unsqueeze", args[0], RW_I(axis + 1));
  for (size_t i = 0; i < nargs; i++)
    call[i] = args[i];
  call[0] = wide;
  call[dim_at] = RW_INTS(axis, axis + 1);
  RW_CHECK(trw_call_original(ctx, nargs, call, &reduced));
  if (!keepdim) {
    *result = reduced;
    return 0;
  }
  RW_CALL(*result, "aten::squeeze.dim", reduced, RW_I(axis + 1));
  return 0;
}

/* aten::mean.dim(self, dim, keepdim=False, *, dtype=None) and
 * aten::sum.dim_IntList: the same arguments. */
static int reduce_one_axis(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                           trw_value **result)
{
  int axis = 0;
  const char *why = nargs == 4 ? one_axis(trw_value_tensor(args[0]), args[1], &axis)
                               : "not (self, dim, keepdim, dtype)";
  if (why)
    return trw_decline(ctx, nargs, args, result, "%s", why);
  return reduce_two_axes(ctx, nargs, args, 1, 2, axis, result);
}

/* aten::linalg_vector_norm(self, ord=2, dim=None, keepdim=False, *,
 * dtype=None): ReduceL2 for ord 2, other orders go elsewhere. */
static int l2_norm_one_axis(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                            trw_value **result)
{
  int axis = 0;
  double ord = 0;
  const char *why = nargs != 5 ? "not (self, ord, dim, keepdim, dtype)"
                    : trw_get_double(args[1], &ord) != 0 || ord != 2.0
                        ? "not of order 2 (ReduceL2)"
                        : one_axis(trw_value_tensor(args[0]), args[2], &axis);
  if (why)
    return trw_decline(ctx, nargs, args, result, "%s", why);
  return reduce_two_axes(ctx, nargs, args, 2, 3, axis, result);
}

TRW_FUNCTION_REWRITER_EX("aten::sum.dim_IntList", "ncnn", TRW_IR_ONNX, reduce_one_axis,
                         opset_13_and_later);
TRW_FUNCTION_REWRITER_EX("aten::mean.dim", "ncnn", TRW_IR_ONNX, reduce_one_axis,
                         opset_18_and_later);
TRW_FUNCTION_REWRITER_EX("aten::linalg_vector_norm", "ncnn", TRW_IR_ONNX, l2_norm_one_axis,
                         opset_18_and_later);
/* check: pnnx needs two or more constant axes when they are an input. */
TRW_FIXES("aten::sum.dim_IntList", "ncnn", "ReduceSum", "input 1 ");
TRW_FIXES("aten::mean.dim", "ncnn", "ReduceMean", "input 1 ");
TRW_FIXES("aten::linalg_vector_norm", "ncnn", "ReduceL2", "input 1 ");
