/*
 * grid_sample.c - aten::grid_sampler (F.grid_sample) below opset 16.
 *
 * default: ONNX has GridSample only from opset 16, and torch 1.13 refuses
 * to export aten::grid_sampler below it.  mmdeploy exports a custom
 * mmdeploy::grid_sampler node that only its TensorRT plugin runs.  The
 * rewrite needs no plugin: it computes the sampling in standard ops that
 * every ONNX runtime has (opset 11).
 *
 *   1. Pixel coordinates from the normalised grid, as torch does:
 *      ((g + 1) / 2) * (size - 1) with align_corners, else
 *      ((g + 1) * size - 1) / 2.  Border padding clamps them to the image.
 *   2. Bilinear: the four neighbours floor(x) (+1), floor(y) (+1) with the
 *      weights (1 - fx, fx) x (1 - fy, fy).  Nearest: round (half to even,
 *      as torch's nearbyint).
 *   3. Each neighbour's linear index y * W + x (clamped into the image)
 *      gathers from the input flattened to (N, C, H * W) (GatherElements).
 *      Under zeros padding, a neighbour outside the image gets weight 0.
 *   4. The weighted sum, reshaped to (N, C, H_out, W_out).
 *
 * Reflection padding and bicubic interpolation are left to the original
 * (which needs opset 16).  C, H, W and the grid's size are taken from the
 * example; the batch dimension may be dynamic.
 */
#include "rw_util.h"

enum { MODE_BILINEAR = 0, MODE_NEAREST = 1 };
enum { PAD_ZEROS = 0, PAD_BORDER = 1 };

static int below_opset_16(const trw_env *env)
{
  return trw_env_opset(env) < 16;
}

/* What every neighbour lookup needs. */
struct sampler {
  trw_value *flat; /* the input as (N, C, H * W) */
  int64_t c, h, w, l; /* channels, input height and width, H_out * W_out */
  int zeros;          /* zeros padding: mask neighbours outside */
};

/* Pixel coordinate along an axis of `size` from the normalised g. */
static int unnormalise(trw_ctx *ctx, trw_value *g, int64_t size,
                       int align_corners, int border, trw_value **out)
{
  trw_value *t = NULL;
  if (align_corners) {
    RW_CALL(t, "aten::add.Scalar", g, RW_D(1.0), RW_I(1));
    RW_CALL(t, "aten::mul.Scalar", t, RW_D((double)(size - 1) / 2.0));
  } else {
    RW_CALL(t, "aten::add.Scalar", g, RW_D(1.0), RW_I(1));
    RW_CALL(t, "aten::mul.Scalar", t, RW_D((double)size / 2.0));
    RW_CALL(t, "aten::sub.Scalar", t, RW_D(0.5), RW_I(1));
  }
  if (border)
    RW_CALL(t, "aten::clamp", t, RW_D(0.0), RW_D((double)(size - 1)));
  *out = t;
  return 0;
}

/* weight * input[..., y, x] for integer-valued float coordinates x, y
 * (N, L), added to *acc (NULL at first). */
static int add_neighbour(trw_ctx *ctx, const struct sampler *s, trw_value *x,
                         trw_value *y, trw_value *weight, trw_value **acc)
{
  trw_value *xc = NULL, *yc = NULL, *lin = NULL, *idx = NULL, *idx3 = NULL;
  trw_value *idx_e = NULL, *vals = NULL, *wt = NULL, *wt3 = NULL, *term = NULL;
  RW_CALL(xc, "aten::clamp", x, RW_D(0.0), RW_D((double)(s->w - 1)));
  RW_CALL(yc, "aten::clamp", y, RW_D(0.0), RW_D((double)(s->h - 1)));
  RW_CALL(lin, "aten::mul.Scalar", yc, RW_D((double)s->w));
  RW_CALL(lin, "aten::add.Tensor", lin, xc, RW_I(1));
  RW_CHECK(rw_cast(ctx, lin, TRW_DTYPE_INT64, &idx));
  RW_CALL(idx3, "aten::unsqueeze", idx, RW_I(1));
  RW_CALL(idx_e, "aten::expand", idx3, RW_INTS(-1, s->c, s->l), RW_B(0));
  RW_CALL(vals, "aten::gather", s->flat, RW_I(2), idx_e, RW_B(0));

  wt = weight;
  if (s->zeros) {
    /* Outside the image the neighbour counts as zero. */
    trw_value *in = NULL, *t = NULL, *mask = NULL;
    RW_CALL(in, "aten::ge.Scalar", x, RW_D(0.0));
    RW_CALL(t, "aten::le.Scalar", x, RW_D((double)(s->w - 1)));
    RW_CALL(in, "aten::logical_and", in, t);
    RW_CALL(t, "aten::ge.Scalar", y, RW_D(0.0));
    RW_CALL(in, "aten::logical_and", in, t);
    RW_CALL(t, "aten::le.Scalar", y, RW_D((double)(s->h - 1)));
    RW_CALL(in, "aten::logical_and", in, t);
    RW_CHECK(rw_cast(ctx, in, trw_tensor_dtype(trw_value_tensor(weight)), &mask));
    RW_CALL(wt, "aten::mul.Tensor", weight, mask);
  }
  RW_CALL(wt3, "aten::unsqueeze", wt, RW_I(1));
  RW_CALL(term, "aten::mul.Tensor", vals, wt3);
  if (*acc)
    RW_CALL(*acc, "aten::add.Tensor", *acc, term, RW_I(1));
  else
    *acc = term;
  return 0;
}

static int grid_sample_decomposed(trw_ctx *ctx, size_t nargs,
                                  trw_value *const args[], trw_value **result)
{
  const trw_tensor *in = nargs == 5 ? trw_value_tensor(args[0]) : NULL;
  const trw_tensor *grid = nargs == 5 ? trw_value_tensor(args[1]) : NULL;
  int64_t mode, padding, sz[4], gsz[4];
  int align = 0;
  if (!in || !grid || trw_tensor_dim(in) != 4 || trw_tensor_dim(grid) != 4 ||
      !rw_is_float(trw_tensor_dtype(in)) ||
      trw_tensor_dtype(in) != trw_tensor_dtype(grid) ||
      trw_get_int(args[2], &mode) != 0 || trw_get_int(args[3], &padding) != 0 ||
      trw_get_bool(args[4], &align) != 0 ||
      (mode != MODE_BILINEAR && mode != MODE_NEAREST) ||
      (padding != PAD_ZEROS && padding != PAD_BORDER))
    return trw_decline(ctx, nargs, args, result, "not 4-D floating input and grid of one dtype, bilinear or nearest, "
                       "zeros or border padding");
  for (int i = 0; i < 4; i++)
    if (trw_tensor_size(in, i, &sz[i]) != 0 || trw_tensor_size(grid, i, &gsz[i]) != 0)
      return trw_decline(ctx, nargs, args, result, "a dim is dynamic (torch.export)");
  if (gsz[3] != 2 || sz[2] < 1 || sz[3] < 1)
    return trw_decline(ctx, nargs, args, result, "the grid's last dim is not 2, or the input is empty");

  struct sampler s = {NULL, sz[1], sz[2], sz[3], gsz[1] * gsz[2],
                      padding == PAD_ZEROS};
  RW_CALL(s.flat, "aten::flatten.using_ints", args[0], RW_I(2), RW_I(3));

  /* The grid as two (N, L) coordinate planes, x then y. */
  trw_value *flat_grid = NULL, *gx = NULL, *gy = NULL, *ix = NULL, *iy = NULL;
  RW_CALL(flat_grid, "aten::flatten.using_ints", args[1], RW_I(1), RW_I(2));
  RW_CALL(gx, "aten::select.int", flat_grid, RW_I(2), RW_I(0));
  RW_CALL(gy, "aten::select.int", flat_grid, RW_I(2), RW_I(1));
  int border = padding == PAD_BORDER;
  RW_CHECK(unnormalise(ctx, gx, s.w, align, border, &ix));
  RW_CHECK(unnormalise(ctx, gy, s.h, align, border, &iy));

  trw_value *acc = NULL;
  if (mode == MODE_NEAREST) {
    trw_value *nx = NULL, *ny = NULL, *one = NULL;
    RW_CALL(nx, "aten::round", ix);
    RW_CALL(ny, "aten::round", iy);
    RW_CALL(one, "aten::ones_like", nx);
    RW_CHECK(add_neighbour(ctx, &s, nx, ny, one, &acc));
  } else {
    trw_value *x0 = NULL, *y0 = NULL, *x1 = NULL, *y1 = NULL;
    trw_value *wx1 = NULL, *wy1 = NULL, *wx0 = NULL, *wy0 = NULL;
    RW_CALL(x0, "aten::floor", ix);
    RW_CALL(y0, "aten::floor", iy);
    RW_CALL(x1, "aten::add.Scalar", x0, RW_D(1.0), RW_I(1));
    RW_CALL(y1, "aten::add.Scalar", y0, RW_D(1.0), RW_I(1));
    RW_CALL(wx1, "aten::sub.Tensor", ix, x0, RW_I(1));
    RW_CALL(wy1, "aten::sub.Tensor", iy, y0, RW_I(1));
    RW_CALL(wx0, "aten::rsub.Scalar", wx1, RW_D(1.0), RW_I(1));
    RW_CALL(wy0, "aten::rsub.Scalar", wy1, RW_D(1.0), RW_I(1));
    trw_value *xs[2] = {x0, x1}, *ys[2] = {y0, y1};
    trw_value *wxs[2] = {wx0, wx1}, *wys[2] = {wy0, wy1};
    for (int j = 0; j < 2; j++)
      for (int i = 0; i < 2; i++) {
        trw_value *w = NULL;
        RW_CALL(w, "aten::mul.Tensor", wxs[i], wys[j]);
        RW_CHECK(add_neighbour(ctx, &s, xs[i], ys[j], w, &acc));
      }
  }
  RW_CALL(*result, "aten::reshape", acc, RW_INTS(-1, s.c, gsz[1], gsz[2]));
  return 0;
}

TRW_FUNCTION_REWRITER_EX("aten::grid_sampler", "default", TRW_IR_ONNX,
                         grid_sample_decomposed, below_opset_16);
TRW_FUNCTION_REWRITER_EX("aten::grid_sampler_2d", "default", TRW_IR_ONNX,
                         grid_sample_decomposed, below_opset_16);
