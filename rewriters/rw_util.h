/*
 * rw_util.h - small helpers shared by the built-in rewriters.
 *
 * Everything here is static inline over the public API in torchrw.h, so a
 * built-in rewriter reads like a plugin would.  The macros assume that the
 * rewriter's context is called `ctx` and that the enclosing function returns
 * int: a failing call returns its code from that function.
 */
#ifndef TORCHRW_RW_UTIL_H
#define TORCHRW_RW_UTIL_H

#include "torchrw.h"

/* Calls op with the listed arguments and stores its result in out; on
 * failure, returns the error from the enclosing function. */
#define RW_CALL(out, op, ...)                                                  \
  do {                                                                         \
    trw_value *const rw_args_[] = {__VA_ARGS__};                               \
    int rw_rc_ = trw_call(ctx, (op), sizeof rw_args_ / sizeof rw_args_[0],     \
                          rw_args_, &(out));                                   \
    if (rw_rc_ != 0)                                                           \
      return rw_rc_;                                                           \
  } while (0)

/* Returns from the enclosing function when rc is an error. */
#define RW_CHECK(rc)                                                           \
  do {                                                                         \
    int rw_rc2_ = (rc);                                                        \
    if (rw_rc2_ != 0)                                                          \
      return rw_rc2_;                                                          \
  } while (0)

/* Shorthands for constant arguments. */
#define RW_I(v) trw_int(ctx, (v))
#define RW_D(v) trw_double(ctx, (v))
#define RW_B(v) trw_bool(ctx, (v))
#define RW_NONE trw_none(ctx)
#define RW_INTS(...)                                                           \
  trw_ints(ctx, (const int64_t[]){__VA_ARGS__},                                \
           sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

/* Nonzero for floating-point dtypes. */
static inline int rw_is_float(trw_dtype d)
{
  return d == TRW_DTYPE_FLOAT32 || d == TRW_DTYPE_FLOAT64 ||
         d == TRW_DTYPE_FLOAT16 || d == TRW_DTYPE_BFLOAT16;
}

/* Normalises a possibly negative dimension against rank; -1 when out of
 * range. */
static inline int rw_dim(int64_t dim, int rank)
{
  if (dim < 0)
    dim += rank;
  return dim >= 0 && dim < rank ? (int)dim : -1;
}

/* The int of a value, or def when it is not an int (None, say). */
static inline int64_t rw_int_or(const trw_value *v, int64_t def)
{
  int64_t out;
  return trw_get_int(v, &out) == 0 ? out : def;
}

/* x.to(dtype), traced (aten::to.dtype). */
static inline int rw_cast(trw_ctx *ctx, trw_value *x, trw_dtype dtype,
                          trw_value **out)
{
  trw_value *args[] = {x, trw_dtype_value(ctx, dtype), trw_bool(ctx, 0),
                       trw_bool(ctx, 0)};
  return trw_call(ctx, "aten::to.dtype", 4, args, out);
}

/* The size of dimension dim of x as a 0-dim int64 tensor computed in the
 * graph (Shape and Gather), so that it follows the input at run time. */
static inline int rw_size_tensor(trw_ctx *ctx, trw_value *x, int dim,
                                 trw_value **out)
{
  trw_value *shape = NULL;
  RW_CALL(shape, "aten::_shape_as_tensor", x);
  RW_CALL(*out, "aten::select.int", shape, RW_I(0), RW_I(dim));
  return 0;
}

/* arange(size of dimension dim of x), following x's size at run time
 * (example: that size in the example being traced). */
static inline int rw_arange_of_dim(trw_ctx *ctx, trw_value *x, int dim,
                                   int64_t example, trw_value **out)
{
  trw_value *n = NULL;
  RW_CHECK(rw_size_tensor(ctx, x, dim, &n));
  RW_CALL(*out, "aten::arange", RW_I(example));
  return trw_trace_set_input(ctx, *out, 0, n);
}

#endif /* TORCHRW_RW_UTIL_H */
