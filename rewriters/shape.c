/*
 * shape.c - roll, cat, flatten, expand and chunk.
 *
 * default, roll: torch 1.13's symbolic slices at -shift and 0..-shift,
 * which is wrong for |shift| >= the size (roll(x, 7) of 5 elements gives
 * x back) and fails for roll without dims (the flattened tensor).  The
 * rewrite takes the shift modulo the example's size and builds the same
 * two slices and a Concat (negative starts, so the size may still change
 * at run time); without dims it flattens, rolls and reshapes back.
 *
 * tensorrt, cat: TensorRT's Concat refuses bool and uint8 tensors when
 * shapes are dynamic (mmdeploy).  The rewrite casts them to int32, concats
 * and casts back.
 *
 * ncnn, flatten: torch exports a flatten that is not ONNX's (N, -1)
 * Flatten as Shape, Slice, Concat and Reshape, and ncnn cannot compute
 * shapes.  The rewrite reshapes with a constant shape: 0 (keep) for the
 * batch axis, the example's sizes, and -1 for the flattened axes.
 *
 * ncnn, expand: a size computed from the input (x.size(0), ...) puts the
 * batch axis into a shape computation ncnn cannot run, and ncnn has no
 * batch axis anyway.  When the batch entry keeps the input's batch size,
 * the rewrite exports the sizes as the constant list of the example with
 * -1 (keep) for the batch.
 *
 * ncnn, chunk: torch exports chunk as Split with sizes computed from Shape.
 * The rewrite slices the example's static chunk sizes (ceil(size /
 * chunks), the last one shorter) with constant bounds.
 *
 * default, unflatten: torch's exporter has a symbolic for aten::unflatten
 * only from opset 13 (torch 2.x; torch 1.13 has none at all), and
 * attention (F.multi_head_attention_forward's in-projection, torchvision's
 * vit) unflattens.  The rewrite is one Reshape: 0 (keep the input's) for
 * the dims before the unflattened one, so a dynamic batch stays dynamic
 * (the first of them -1 when no size asked for is: torch's shape
 * inference refuses a constant shape with a 0 and no -1), the sizes asked
 * for (as the model computed them: attention computes them from traced
 * sizes, and those stay computed in the graph), and the example's sizes
 * for the dims after it.  A dim after it that is dynamic, or a size of 0
 * or below -1, goes to the original.
 */
#include "rw_util.h"

#define MAX_RANK 8
#define MAX_LIST 64

/* ------------------------------------------------------------------------ */
/* roll                                                                      */

/* x rolled by shift along dim (whose example size is size). */
static int roll_one(trw_ctx *ctx, trw_value *x, int dim, int64_t size,
                    int64_t shift, trw_value **out)
{
  int64_t s = size > 0 ? ((shift % size) + size) % size : 0;
  if (s == 0) {
    *out = x;
    return 0;
  }
  trw_value *tail = NULL, *head = NULL;
  RW_CALL(tail, "aten::slice.Tensor", x, RW_I(dim), RW_I(-s), RW_I(INT64_MAX),
          RW_I(1));
  RW_CALL(head, "aten::slice.Tensor", x, RW_I(dim), RW_I(0), RW_I(-s), RW_I(1));
  trw_value *parts[2] = {tail, head};
  RW_CALL(*out, "aten::cat", trw_tensors(ctx, parts, 2), RW_I(dim));
  return 0;
}

static int roll_slices(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                       trw_value **result)
{
  const trw_tensor *x = nargs == 3 ? trw_value_tensor(args[0]) : NULL;
  int64_t shifts[MAX_RANK], dims[MAX_RANK];
  size_t nshifts = 0, ndims = 0;
  int rank = x ? trw_tensor_dim(x) : -1;
  if (rank < 1 || trw_get_ints(args[1], shifts, MAX_RANK, &nshifts) != 0 ||
      trw_get_ints(args[2], dims, MAX_RANK, &ndims) != 0 || nshifts == 0)
    return trw_decline(ctx, nargs, args, result, "not a tensor rolled by 1 to 8 int shifts");
  if (trw_trace_arg_is_constant(ctx, 1) != 1)
    return trw_decline(ctx, nargs, args, result, "the shifts are computed from traced sizes");

  if (ndims == 0) {
    /* roll of the flattened tensor, shaped back like the input. */
    int64_t numel = 1, size;
    for (int i = 0; i < rank; i++) {
      if (trw_tensor_size(x, i, &size) != 0)
        return trw_decline(ctx, nargs, args, result, "a dim is dynamic (torch.export)");
      numel *= size;
    }
    if (nshifts != 1)
      return trw_decline(ctx, nargs, args, result, "several shifts without dims");
    trw_value *flat = NULL, *rolled = NULL;
    RW_CALL(flat, "aten::reshape", args[0], RW_INTS(-1));
    RW_CHECK(roll_one(ctx, flat, 0, numel, shifts[0], &rolled));
    RW_CALL(*result, "aten::reshape_as", rolled, args[0]);
    return 0;
  }
  if (ndims != nshifts)
    return trw_decline(ctx, nargs, args, result, "not as many shifts as dims");
  trw_value *y = args[0];
  for (size_t i = 0; i < ndims; i++) {
    int d = rw_dim(dims[i], rank);
    int64_t size;
    if (d < 0 || trw_tensor_size(x, d, &size) != 0)
      return trw_decline(ctx, nargs, args, result, "a dim out of range, or dynamic (torch.export)");
    RW_CHECK(roll_one(ctx, y, d, size, shifts[i], &y));
  }
  if (y == args[0]) /* every shift was a multiple of its size */
    RW_CALL(y, "aten::clone", args[0], RW_NONE);
  *result = y;
  return 0;
}

TRW_FUNCTION_REWRITER_EX("torch.roll", "default", TRW_IR_ONNX, roll_slices);

/* ------------------------------------------------------------------------ */
/* cat of bool and uint8 for TensorRT                                        */

static int cat_through_int32(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                             trw_value **result)
{
  size_t n = 0;
  if (nargs != 2 || trw_len(args[0], &n) != 0 || n == 0 || n > MAX_LIST)
    return trw_decline(ctx, nargs, args, result, "not 1 to 64 tensors");
  trw_value *items[MAX_LIST];
  trw_dtype dtype = TRW_DTYPE_UNKNOWN;
  for (size_t i = 0; i < n; i++) {
    items[i] = trw_item(ctx, args[0], i);
    const trw_tensor *t = trw_value_tensor(items[i]);
    if (!t || (i > 0 && trw_tensor_dtype(t) != dtype))
      return trw_decline(ctx, nargs, args, result, "the tensors are not of one dtype");
    if (i == 0)
      dtype = trw_tensor_dtype(t);
  }
  if (dtype != TRW_DTYPE_BOOL && dtype != TRW_DTYPE_UINT8)
    return trw_decline(ctx, nargs, args, result, "%s tensors concatenate as they are", trw_dtype_name(dtype));

  for (size_t i = 0; i < n; i++)
    RW_CHECK(rw_cast(ctx, items[i], TRW_DTYPE_INT32, &items[i]));
  trw_value *cat_args[2] = {trw_tensors(ctx, items, n), args[1]}, *joined = NULL;
  RW_CHECK(trw_call_original(ctx, 2, cat_args, &joined));
  return rw_cast(ctx, joined, dtype, result);
}

TRW_FUNCTION_REWRITER("torch.cat", "tensorrt", cat_through_int32);
/* check: TensorRT's Concat refuses bool and uint8 inputs. */
TRW_FIXES("torch.cat", "tensorrt", "Concat", "input ");

/* ------------------------------------------------------------------------ */
/* flatten, expand and chunk for ncnn                                        */

static int flatten_constant_shape(trw_ctx *ctx, size_t nargs,
                                  trw_value *const args[], trw_value **result)
{
  const trw_tensor *x = nargs == 3 ? trw_value_tensor(args[0]) : NULL;
  int rank = x ? trw_tensor_dim(x) : -1;
  int64_t start, end;
  if (rank < 2 || rank > MAX_RANK || trw_get_int(args[1], &start) != 0 ||
      trw_get_int(args[2], &end) != 0)
    return trw_decline(ctx, nargs, args, result, "not a tensor of 2 to 8 dims with int start and end dims");
  int s = rw_dim(start, rank), e = rw_dim(end, rank);
  /* Flatten from the batch axis, nothing to flatten, or ONNX's own
   * Flatten(axis=1): torch's export is fine. */
  if (s <= 0 || e < 0 || e <= s || (s == 1 && e == rank - 1))
    return trw_decline(ctx, nargs, args, result, "torch's own export of this flatten has no Shape (from the batch dim, "
                       "nothing to flatten, or ONNX's Flatten)");

  int64_t shape[MAX_RANK], exported[MAX_RANK];
  size_t n = 0;
  int64_t group = 1;
  for (int i = 0; i < rank; i++) {
    int64_t size;
    if (trw_tensor_size(x, i, &size) != 0)
      return trw_decline(ctx, nargs, args, result, "a dim is dynamic (torch.export)");
    if (i > s && i <= e) {
      group *= size;
      continue;
    }
    if (i == s) {
      group = size;
      shape[n] = -1;
      exported[n++] = -1;
      continue;
    }
    shape[n] = size;
    exported[n++] = i == 0 ? 0 : size;
  }
  /* The traced call gets the real sizes, so that torch's shape inference
   * sees the example; the graph gets 0 for the batch and -1. */
  for (size_t i = 0; i < n; i++)
    if (shape[i] == -1)
      shape[i] = group;
  RW_CALL(*result, "aten::reshape", args[0], trw_ints(ctx, shape, n));
  return trw_trace_set_input(ctx, *result, 1, trw_ints(ctx, exported, n));
}

TRW_FUNCTION_REWRITER("torch.flatten", "ncnn", flatten_constant_shape);
/* check: ncnn's Reshape needs its shape at conversion. */
TRW_FIXES("torch.flatten", "ncnn", "Reshape", "input 1 ");

static int expand_keep_batch(trw_ctx *ctx, size_t nargs,
                             trw_value *const args[], trw_value **result)
{
  const trw_tensor *x = nargs == 3 ? trw_value_tensor(args[0]) : NULL;
  int rank = x ? trw_tensor_dim(x) : -1;
  int64_t sizes[MAX_RANK], batch;
  size_t n = 0;
  if (rank < 3 || trw_get_ints(args[1], sizes, MAX_RANK, &n) != 0 ||
      n != (size_t)rank || trw_tensor_size(x, 0, &batch) != 0 ||
      (sizes[0] != -1 && sizes[0] != batch))
    return trw_decline(ctx, nargs, args, result, "not a tensor of 3 to 8 dims expanded to as many sizes with its own "
                       "batch size first");
  RW_CHECK(trw_call_original(ctx, nargs, args, result));
  sizes[0] = -1;
  return trw_trace_set_input(ctx, *result, 1, trw_ints(ctx, sizes, n));
}

TRW_FUNCTION_REWRITER("torch.Tensor.expand", "ncnn", expand_keep_batch);
/* check: pnnx has no ncnn layer for Expand. */
TRW_FIXES("torch.Tensor.expand", "ncnn", "Expand", "operator is not supported");

static int chunk_static_slices(trw_ctx *ctx, size_t nargs,
                               trw_value *const args[], trw_value **result)
{
  const trw_tensor *x = nargs == 3 ? trw_value_tensor(args[0]) : NULL;
  int rank = x ? trw_tensor_dim(x) : -1;
  int64_t chunks, d, size;
  if (rank < 1 || trw_get_int(args[1], &chunks) != 0 || chunks < 1 ||
      trw_get_int(args[2], &d) != 0 || rw_dim(d, rank) < 0 ||
      trw_tensor_size(x, rw_dim(d, rank), &size) != 0 || size < 1)
    return trw_decline(ctx, nargs, args, result, "not a non-empty tensor split into a positive int of chunks along a "
                       "static dim");
  int dim = rw_dim(d, rank);
  int64_t step = (size + chunks - 1) / chunks;
  size_t n = (size_t)((size + step - 1) / step);
  if (n > MAX_LIST)
    return trw_decline(ctx, nargs, args, result, "more than 64 chunks");
  trw_value *parts[MAX_LIST];
  for (size_t i = 0; i < n; i++) {
    int64_t begin = (int64_t)i * step;
    int64_t end = begin + step < size ? begin + step : size;
    RW_CALL(parts[i], "aten::slice.Tensor", args[0], RW_I(dim), RW_I(begin),
            RW_I(end), RW_I(1));
  }
  *result = trw_tensors(ctx, parts, n);
  return *result ? 0 : trw_error(ctx, TRW_ENOMEM, "out of memory");
}

TRW_FUNCTION_REWRITER("torch.chunk", "ncnn", chunk_static_slices);

/* ------------------------------------------------------------------------ */
/* unflatten below opset 13                                                  */

static int unflatten_available(const trw_env *env)
{
  return trw_env_opset(env) < 13 || !trw_env_torch_at_least(env, 2, 0);
}

static int unflatten_as_reshape(trw_ctx *ctx, size_t nargs,
                                trw_value *const args[], trw_value **result)
{
  const trw_tensor *x = nargs == 3 ? trw_value_tensor(args[0]) : NULL;
  int rank = x ? trw_tensor_dim(x) : -1;
  int64_t d, sizes[MAX_RANK];
  size_t nsizes = 0;
  if (rank < 1 || trw_get_int(args[1], &d) != 0 || rw_dim(d, rank) < 0 ||
      trw_get_ints(args[2], sizes, MAX_RANK, &nsizes) != 0 || nsizes < 1 ||
      (size_t)rank - 1 + nsizes > MAX_RANK)
    return trw_decline(ctx, nargs, args, result, "not a tensor unflattened along one of its dims into int sizes "
                       "(at most 8 dims in all)");
  int constant = trw_trace_arg_is_constant(ctx, 2);
  if (constant < 0)
    return constant;
  int dim = rw_dim(d, rank), inferred = 0;
  for (size_t i = 0; i < nsizes; i++) {
    if (sizes[i] == 0 || sizes[i] < -1 || (sizes[i] == -1 && inferred++))
      return trw_decline(ctx, nargs, args, result, "a size of 0, below -1, or more than one -1 (Reshape would read "
                         "0 as 'keep the input's')");
  }
  /* The traced call reshapes to the example's sizes (torch's shape
   * inference sees them); the graph gets 0 (keep) for the leading dims,
   * the sizes as the model computed them (computed in the trace where it
   * computed them from traced sizes), and the example's trailing sizes. */
  int64_t shape[MAX_RANK];
  trw_value *exported[MAX_RANK];
  size_t n = 0;
  for (int i = 0; i < rank; i++) {
    int64_t size;
    if (i == dim) {
      for (size_t j = 0; j < nsizes; j++) {
        shape[n] = sizes[j];
        exported[n++] = constant ? trw_int(ctx, sizes[j]) : trw_trace_arg_element(ctx, 2, j);
      }
      continue;
    }
    if (trw_tensor_size(x, i, &size) != 0)
      return trw_decline(ctx, nargs, args, result, "a dim other than the unflattened one is dynamic (torch.export)");
    shape[n] = size;
    exported[n++] = trw_int(ctx, i < dim ? 0 : size);
  }
  /* torch's ONNX shape inference refuses a constant shape with a 0 and no
   * -1: without a -1 among the sizes, the first dim is the one inferred. */
  if (dim > 0 && !inferred)
    exported[0] = trw_int(ctx, -1);
  for (size_t i = 0; i < n; i++)
    if (!exported[i])
      return trw_error(ctx, TRW_ENOMEM, "out of memory");
  RW_CALL(*result, "aten::reshape", args[0], trw_ints(ctx, shape, n));
  return trw_trace_set_input_ints(ctx, *result, 1, exported, n);
}

TRW_FUNCTION_REWRITER_EX("aten::unflatten.int", "default", TRW_IR_ONNX, unflatten_as_reshape,
                         unflatten_available);
