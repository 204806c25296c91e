/*
 * topk.c - torch.topk.
 *
 * default: torch records the k an export script passes as an int as a
 * constant, so a graph exported with dynamic axes fails at run time when a
 * smaller input has fewer than k elements along the dimension (ONNX TopK
 * requires k <= size).  The rewrite feeds TopK k = min(k, size) computed in
 * the graph from Shape and Gather (Less and Where), so that every input
 * size works; an input as large as the example still gets exactly k.  A k
 * that the script already computed in the graph is left as it is.
 *
 * tensorrt: every parser takes K up to 3840 (its ITopKLayer).  From 8.6
 * on K may be computed in the graph (onnx-tensorrt's docs/operators.md,
 * data/backends/tensorrt-8.6.json and -10.15.json), so the rewrite is the
 * default's, with an int k above 3840 clamped to it and a warning, as
 * mmdeploy does (the result then has 3840 elements, not k).
 *
 * tensorrt:<8.6: 8.5's parser takes K as an initializer only
 * (tensorrt-8.5.json), so the rewrite makes K the constant
 * min(k, size of the example's dimension), clamped to 3840 likewise; a k
 * the script computed from a traced size is made constant too.
 */
#include "rw_util.h"

/* TensorRT's limit on K (its ITopKLayer). */
#define TENSORRT_MAX_TOPK 3840

/* The example's size along the topk dimension; nonzero when the arguments
 * are what the rewriters expect (a tensor, an int k and a valid dim). */
static int topk_shape(trw_value *const args[], size_t nargs, int64_t *k,
                      int *dim, int64_t *size)
{
  const trw_tensor *self = trw_value_tensor(args[0]);
  int64_t d;
  if (nargs != 5 || !self || trw_tensor_dim(self) < 1 ||
      trw_get_int(args[1], k) != 0 || trw_get_int(args[2], &d) != 0)
    return 0;
  *dim = rw_dim(d, trw_tensor_dim(self));
  return *dim >= 0 && trw_tensor_size(self, *dim, size) == 0;
}

/* k no larger than max_k, with a warning when it was. */
static int64_t topk_clamp(trw_ctx *ctx, int64_t k, int64_t max_k)
{
  if (k <= max_k)
    return k;
  trw_log_warn(ctx,
               "TensorRT's TopK takes k up to %lld, but k is %lld: k is set to %lld, so "
               "the output is smaller than in PyTorch",
               (long long)max_k, (long long)k, (long long)max_k);
  return max_k;
}

/* TopK's k becomes min(k, size) computed when the graph runs, k first
 * clamped to max_k. */
static int topk_run_time_k(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                           trw_value **result, int64_t max_k)
{
  int64_t k, size;
  int dim;
  if (!topk_shape(args, nargs, &k, &dim, &size) || k < 0)
    return trw_decline(ctx, nargs, args, result,
                       "not a tensor with an int k >= 0 and a valid, static dim");
  int64_t asked = k;
  k = topk_clamp(ctx, k, max_k);

  /* k_run = size < k ? size : k, computed when the graph runs. */
  trw_value *n = NULL, *smaller = NULL, *k_run = NULL;
  RW_CHECK(rw_size_tensor(ctx, args[0], dim, &n));
  RW_CALL(smaller, "aten::lt.Scalar", n, RW_I(k));
  RW_CALL(k_run, "aten::where.ScalarOther", smaller, n, RW_I(k));

  trw_value *clamped[5] = {args[0], RW_I(k), args[2], args[3], args[4]};
  RW_CHECK(trw_call_original(ctx, nargs, k == asked ? args : clamped, result));
  int constant = trw_trace_input_is_constant(ctx, *result, 1);
  if (constant < 0)
    return constant;
  /* A k the script computed from the input already follows it. */
  if (!constant)
    return 0;
  return trw_trace_set_input(ctx, *result, 1, k_run);
}

static int topk_dynamic_k(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                          trw_value **result)
{
  return topk_run_time_k(ctx, nargs, args, result, INT64_MAX);
}

TRW_FUNCTION_REWRITER_EX("torch.topk", "default", TRW_IR_ONNX, topk_dynamic_k);

static int topk_tensorrt(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                         trw_value **result)
{
  return topk_run_time_k(ctx, nargs, args, result, TENSORRT_MAX_TOPK);
}

TRW_FUNCTION_REWRITER_EX("torch.topk", "tensorrt", TRW_IR_ONNX, topk_tensorrt);

static int topk_static_k(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                         trw_value **result)
{
  int64_t k, size;
  int dim;
  if (!topk_shape(args, nargs, &k, &dim, &size) || k < 0)
    return trw_decline(ctx, nargs, args, result,
                       "not a tensor with an int k >= 0 and a valid, static dim");

  int64_t k_static = topk_clamp(ctx, k < size ? k : size, TENSORRT_MAX_TOPK);
  trw_value *call_args[5] = {args[0], RW_I(k_static), args[2], args[3],
                             args[4]};
  RW_CHECK(trw_call_original(ctx, nargs, call_args, result));
  /* A k the script computed from a traced size is made constant too. */
  int constant = trw_trace_input_is_constant(ctx, *result, 1);
  if (constant < 0)
    return constant;
  return constant ? 0 : trw_trace_set_input(ctx, *result, 1, RW_I(k_static));
}

TRW_FUNCTION_REWRITER("torch.topk", "tensorrt:<8.6", topk_static_k);
/* check: TensorRT 8.5 takes TopK's K as an initializer only. */
TRW_FIXES("torch.topk", "tensorrt:<8.6", "TopK", "input 1 ");
