/*
 * slice.c - the ONNX symbolic of aten::slice for TensorRT.
 *
 * TensorRT's ONNX parser before 10.15 takes a Slice whose axes (input 3)
 * and steps (input 4) are initializers or Constant outputs; starts and
 * ends may be computed (the support matrices of 8.5, 8.6 and 10.1:
 * "'axes' must be an initializer"; 10.15's lists Slice without a
 * restriction, data/backends/tensorrt-10.15.json).  torch 2.x's symbolic turns the dim of x[:, a:b] into
 * Unsqueeze(dim) and leaves it to constant folding, which does not reach
 * into If and Loop bodies: a scripted function such as torchvision's
 * batched_nms (torch.jit._script_if_tracing) then exports a Slice with a
 * computed axes input inside an If, and TensorRT cannot parse the model.
 * This symbolic writes every constant input as a Constant node in the
 * graph being built (a subgraph included).  Where the dim is not a
 * constant, or below opset 10 (Slice attributes), torch's own runs.
 */
#include "torchrw.h"

#define INT64_MAX_ ((int64_t)0x7fffffffffffffffLL)

/* A Slice input from a 0-dim operand: a Constant [v] when it is a
 * constant (def when None), else Unsqueeze(v, 0) computed in the graph. */
static trw_sym *slice_input(trw_ctx *ctx, trw_graph *g, trw_sym *v, int64_t def)
{
  int64_t c = def;
  if (trw_sym_is_none(v) || trw_sym_const_int(v, &c) == 0)
    return trw_g_const_ints(ctx, g, &c, 1);
  int64_t zero = 0;
  if (trw_ctx_opset(ctx) < 13) {
    trw_attr axes = TRW_ATTR_INTS("axes", &zero, 1);
    return trw_g_op(ctx, g, "Unsqueeze", 1, &v, &axes, 1);
  }
  trw_sym *args[2] = {v, trw_g_const_ints(ctx, g, &zero, 1)};
  return args[1] ? trw_g_op(ctx, g, "Unsqueeze", 2, args, NULL, 0) : NULL;
}

/* aten::slice.Tensor(Tensor self, int dim, SymInt? start, SymInt? end,
 * SymInt step) */
static int slice_constant_axes(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                               trw_sym **result)
{
  int64_t dim, start = 0, end = INT64_MAX_, step = 1;
  if (nin != 5 || trw_ctx_opset(ctx) < 10 || trw_sym_const_int(in[1], &dim) != 0)
    return trw_decline_symbolic(ctx, g, nin, in, result,
                                "not aten::slice.Tensor with a constant dim at opset 10 or later");
  int const_start = trw_sym_is_none(in[2]) || trw_sym_const_int(in[2], &start) == 0;
  int const_end = trw_sym_is_none(in[3]) || trw_sym_const_int(in[3], &end) == 0;
  int const_step = trw_sym_is_none(in[4]) || trw_sym_const_int(in[4], &step) == 0;
  if (!const_step)
    return trw_decline_symbolic(ctx, g, nin, in, result, "the step is not a constant");
  if (const_start && const_end && start == 0 && end == INT64_MAX_ && step == 1) {
    *result = in[0]; /* x[:] */
    return 0;
  }
  trw_sym *args[5] = {in[0], slice_input(ctx, g, in[2], 0), slice_input(ctx, g, in[3], INT64_MAX_),
                      trw_g_const_ints(ctx, g, &dim, 1), trw_g_const_ints(ctx, g, &step, 1)};
  for (int i = 1; i < 5; i++)
    if (!args[i])
      return TRW_EOP;
  *result = trw_g_op(ctx, g, "Slice", 5, args, NULL, 0);
  return *result ? 0 : TRW_EOP;
}

TRW_SYMBOLIC_REWRITER("aten::slice", "tensorrt:<10.15", slice_constant_axes);
/* check: TensorRT before 10.15 takes Slice's axes as an initializer only. */
TRW_FIXES("aten::slice", "tensorrt:<10.15", "Slice", "input 3 ");
