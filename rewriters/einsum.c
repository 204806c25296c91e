/*
 * einsum.c - torch.einsum below opset 12.
 *
 * default: ONNX has Einsum only from opset 12, and torch's exporter
 * refuses aten::einsum before it (torch.export's exporter builds it at 18
 * and onnx's version converter cannot take it below 12).  TensorRT and
 * ncnn users often export at opset 11, and attention blocks, relative
 * position biases and "bchw,bkc->bkhw"-style heads write their products as
 * einsum.  The rewrite contracts the operands left to right with standard
 * operators: a label that only one operand has and the output lacks is
 * summed out first; a pair with one contracted label and at most one label
 * of each side's own becomes a MatMul (batch labels broadcast as MatMul
 * does); any other pair is multiplied with broadcasting (Unsqueeze, Mul)
 * and summed over its contracted labels.  A final Transpose puts the
 * labels in the output's order.  No size of the example is written into
 * the graph, so dynamic axes stay dynamic.
 *
 * Covered: any number of operands, explicit ("ij,jk->ik") and implicit
 * ("ij,jk") outputs, "..." (broadcast as torch does, aligned to the
 * right).  Not covered, handed to the original with an info line (which
 * then fails below opset 12 as it does without torchrw): a label repeated
 * within one operand (diagonals, traces: "ii->i"), the sublist form's
 * path argument given explicitly, and equations torch itself rejects.
 */
#include <string.h>

#include "rw_util.h"

#define MAX_OPERANDS 8
#define MAX_DIMS 16   /* per operand, ellipsis included */
#define NLETTERS 52   /* A-Z then a-z, as torch numbers them */
#define NLABELS (NLETTERS + MAX_DIMS) /* letters, then ellipsis dims */

static int below_opset_12(const trw_env *env)
{
  return trw_env_opset(env) < 12;
}

/* A letter's label: A-Z are 0-25, a-z 26-51 (torch's order, which the
 * implicit output follows); -1 for anything else. */
static int letter_label(char c)
{
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return 26 + (c - 'a');
  return -1;
}

/* A tensor of the contraction and the label of each of its dims. */
typedef struct {
  trw_value *v;
  int labels[MAX_DIMS];
  int rank;
} term;

typedef struct {
  term ops[MAX_OPERANDS];
  int nops;
  int out[MAX_DIMS];
  int nout;
} plan;

/* Parses one operand's subscripts ("b...ij") for a tensor of `rank` dims.
 * Sets *ell_dims to the number of dims its ellipsis covers (0 without
 * one).  With labels, also writes its labels (*n of them), the ellipsis
 * dims taking the last of the `nell` ellipsis labels (broadcasting aligns
 * them to the right).  Returns NULL, or why it cannot. */
static const char *parse_term(const char *s, size_t len, int rank, int nell, int *labels,
                              int *n, int *ell_dims)
{
  int letters = 0, has_ell = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '.') {
      if (has_ell || i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.')
        return "a malformed ellipsis";
      has_ell = 1;
      i += 2;
    } else if (letter_label(s[i]) < 0) {
      return "a subscript that is not a letter";
    } else {
      letters++;
    }
  }
  int ell = has_ell ? rank - letters : 0;
  if (ell < 0 || (!has_ell && letters != rank))
    return "subscripts that do not match an operand's rank";
  if (rank > MAX_DIMS)
    return "an operand of more than 16 dims";
  *ell_dims = ell;
  if (!labels)
    return NULL;
  *n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '.') {
      for (int e = 0; e < ell; e++)
        labels[(*n)++] = NLETTERS + (nell - ell) + e;
      i += 2;
    } else {
      labels[(*n)++] = letter_label(s[i]);
    }
  }
  return NULL;
}

/* Reads the equation into p (labels of each operand and of the output).
 * Returns NULL, or why the equation is not covered. */
static const char *parse_equation(const char *eq, trw_value *const tensors[],
                                  size_t ntensors, plan *p)
{
  char buf[512];
  size_t len = 0;
  for (const char *c = eq; *c; c++)
    if (*c != ' ' && len + 1 < sizeof buf)
      buf[len++] = *c;
  buf[len] = '\0';
  const char *arrow = strstr(buf, "->");
  size_t lhs_len = arrow ? (size_t)(arrow - buf) : len;
  if (ntensors == 0 || ntensors > MAX_OPERANDS)
    return "not 1 to 8 operands";

  /* The operands' subscripts, and how wide the ellipsis is. */
  const char *start[MAX_OPERANDS];
  size_t tlen[MAX_OPERANDS];
  size_t nterms = 0, from = 0;
  for (size_t i = 0; i <= lhs_len; i++) {
    if (i == lhs_len || buf[i] == ',') {
      if (nterms == MAX_OPERANDS)
        return "more subscripts than operands";
      start[nterms] = buf + from;
      tlen[nterms++] = i - from;
      from = i + 1;
    }
  }
  if (nterms != ntensors)
    return "not as many subscripts as operands";
  int nell = 0;
  for (size_t k = 0; k < nterms; k++) {
    const trw_tensor *t = trw_value_tensor(tensors[k]);
    int ell = 0;
    if (!t || trw_tensor_dim(t) < 0)
      return "an operand that is not a tensor";
    const char *why = parse_term(start[k], tlen[k], trw_tensor_dim(t), 0, NULL, NULL, &ell);
    if (why)
      return why;
    if (ell > nell)
      nell = ell;
  }
  p->nops = (int)nterms;
  int count[NLABELS] = {0};
  for (size_t k = 0; k < nterms; k++) {
    term *o = &p->ops[k];
    int ell = 0;
    o->v = tensors[k];
    parse_term(start[k], tlen[k], trw_tensor_dim(trw_value_tensor(tensors[k])), nell,
               o->labels, &o->rank, &ell);
    int seen[NLABELS] = {0};
    for (int d = 0; d < o->rank; d++) {
      if (seen[o->labels[d]]++)
        return "a label repeated within one operand (a diagonal)";
      count[o->labels[d]]++;
    }
  }

  p->nout = 0;
  if (arrow) {
    const char *rhs = arrow + 2;
    int seen[NLABELS] = {0}, has_ell = 0;
    for (const char *c = rhs; *c; c++) {
      if (*c == '.') {
        if (has_ell || c[1] != '.' || c[2] != '.')
          return "a malformed ellipsis in the output";
        has_ell = 1;
        for (int e = 0; e < nell; e++)
          p->out[p->nout++] = NLETTERS + e;
        c += 2;
        continue;
      }
      int l = letter_label(*c);
      if (l < 0 || seen[l]++ || count[l] == 0 || p->nout >= MAX_DIMS)
        return "an output label that is not a letter, repeated, or in no operand";
      p->out[p->nout++] = l;
    }
    /* Without "..." in the output, ellipsis dims are summed. */
  } else {
    /* Implicit output: the ellipsis, then the letters met once, in order. */
    for (int e = 0; e < nell; e++)
      p->out[p->nout++] = NLETTERS + e;
    for (int l = 0; l < NLETTERS; l++)
      if (count[l] == 1) {
        if (p->nout >= MAX_DIMS)
          return "an output of more than 16 dims";
        p->out[p->nout++] = l;
      }
  }
  return NULL;
}

static int has_label(const int *labels, int n, int l)
{
  for (int i = 0; i < n; i++)
    if (labels[i] == l)
      return 1;
  return 0;
}

static int index_of(const int *labels, int n, int l)
{
  for (int i = 0; i < n; i++)
    if (labels[i] == l)
      return i;
  return -1;
}

/* t permuted so that its labels read `order` (a permutation of them). */
static int permute_to(trw_ctx *ctx, term *t, const int *order)
{
  int64_t perm[MAX_DIMS];
  int identity = 1;
  for (int i = 0; i < t->rank; i++) {
    perm[i] = index_of(t->labels, t->rank, order[i]);
    identity &= perm[i] == i;
  }
  if (!identity)
    RW_CALL(t->v, "aten::permute", t->v, trw_ints(ctx, perm, (size_t)t->rank));
  memcpy(t->labels, order, sizeof(int) * (size_t)t->rank);
  return 0;
}

/* Sums t over its labels that keep[] does not mark. */
static int sum_unkept(trw_ctx *ctx, term *t, const int *keep)
{
  int64_t dims[MAX_DIMS];
  int nd = 0, kept[MAX_DIMS], nk = 0;
  for (int i = 0; i < t->rank; i++) {
    if (keep[t->labels[i]])
      kept[nk++] = t->labels[i];
    else
      dims[nd++] = i;
  }
  if (nd == 0)
    return 0;
  RW_CALL(t->v, "aten::sum.dim_IntList", t->v, trw_ints(ctx, dims, (size_t)nd), RW_B(0),
          RW_NONE);
  memcpy(t->labels, kept, sizeof(int) * (size_t)nk);
  t->rank = nk;
  return 0;
}

/* Size of t's dim holding label l, or -1 when unknown (symbolic). */
static int64_t label_size(const term *t, int l)
{
  int64_t size;
  int i = index_of(t->labels, t->rank, l);
  return i >= 0 && trw_tensor_size(trw_value_tensor(t->v), i, &size) == 0 ? size : -1;
}

/* a <- a (x) b over the labels in `needed` (those the output or a later
 * operand has); the rest of their common labels are contracted. */
static int contract(trw_ctx *ctx, term *a, term *b, const int *needed)
{
  int batch[MAX_DIMS], aonly[MAX_DIMS], bonly[MAX_DIMS], con[MAX_DIMS];
  int nb = 0, na = 0, nbo = 0, nc = 0;
  for (int i = 0; i < a->rank; i++) {
    int l = a->labels[i];
    if (!has_label(b->labels, b->rank, l))
      aonly[na++] = l;
    else if (needed[l])
      batch[nb++] = l;
    else
      con[nc++] = l;
  }
  for (int i = 0; i < b->rank; i++)
    if (!has_label(a->labels, a->rank, b->labels[i]))
      bonly[nbo++] = b->labels[i];
  if (nb + na + nbo + nc > MAX_DIMS)
    return trw_error(ctx, TRW_ERANGE, "einsum: more than 16 labels in one product");

  int matmul = nc == 1 && na <= 1 && nbo <= 1;
  if (matmul) {
    /* Same contracted size on both sides (a size-1 side broadcasts in
     * einsum, not in MatMul). */
    int64_t sa = label_size(a, con[0]), sb = label_size(b, con[0]);
    matmul = sa == sb;
  }
  if (matmul) {
    int ord[MAX_DIMS], n = 0;
    for (int i = 0; i < nb; i++) ord[n++] = batch[i];
    for (int i = 0; i < na; i++) ord[n++] = aonly[i];
    ord[n++] = con[0];
    RW_CHECK(permute_to(ctx, a, ord));
    n = 0;
    for (int i = 0; i < nb; i++) ord[n++] = batch[i];
    ord[n++] = con[0];
    for (int i = 0; i < nbo; i++) ord[n++] = bonly[i];
    RW_CHECK(permute_to(ctx, b, ord));
    trw_value *x = a->v, *y = b->v, *r = NULL;
    if (na == 0)
      RW_CALL(x, "aten::unsqueeze", x, RW_I(nb));
    if (nbo == 0)
      RW_CALL(y, "aten::unsqueeze", y, RW_I(nb + 1));
    RW_CALL(r, "aten::matmul", x, y);
    if (nbo == 0)
      RW_CALL(r, "aten::squeeze.dim", r, RW_I(nb + 1));
    if (na == 0)
      RW_CALL(r, "aten::squeeze.dim", r, RW_I(nb));
    a->v = r;
    a->rank = 0;
    for (int i = 0; i < nb; i++) a->labels[a->rank++] = batch[i];
    for (int i = 0; i < na; i++) a->labels[a->rank++] = aonly[i];
    for (int i = 0; i < nbo; i++) a->labels[a->rank++] = bonly[i];
    return 0;
  }

  /* Broadcast product over [batch, aonly, bonly, con], then the sum. */
  int ord[MAX_DIMS], n = 0;
  for (int i = 0; i < nb; i++) ord[n++] = batch[i];
  for (int i = 0; i < na; i++) ord[n++] = aonly[i];
  for (int i = 0; i < nc; i++) ord[n++] = con[i];
  RW_CHECK(permute_to(ctx, a, ord));
  n = 0;
  for (int i = 0; i < nb; i++) ord[n++] = batch[i];
  for (int i = 0; i < nbo; i++) ord[n++] = bonly[i];
  for (int i = 0; i < nc; i++) ord[n++] = con[i];
  RW_CHECK(permute_to(ctx, b, ord));
  trw_value *x = a->v, *y = b->v, *r = NULL;
  for (int i = 0; i < nbo; i++) /* a: [batch, aonly, 1.., con] */
    RW_CALL(x, "aten::unsqueeze", x, RW_I(nb + na));
  for (int i = 0; i < na; i++) /* b: [batch, 1.., bonly, con] */
    RW_CALL(y, "aten::unsqueeze", y, RW_I(nb));
  RW_CALL(r, "aten::mul.Tensor", x, y);
  if (nc > 0) {
    int64_t dims[MAX_DIMS];
    for (int i = 0; i < nc; i++)
      dims[i] = nb + na + nbo + i;
    RW_CALL(r, "aten::sum.dim_IntList", r, trw_ints(ctx, dims, (size_t)nc), RW_B(0), RW_NONE);
  }
  a->v = r;
  a->rank = 0;
  for (int i = 0; i < nb; i++) a->labels[a->rank++] = batch[i];
  for (int i = 0; i < na; i++) a->labels[a->rank++] = aonly[i];
  for (int i = 0; i < nbo; i++) a->labels[a->rank++] = bonly[i];
  return 0;
}

/* aten::einsum(str equation, Tensor[] tensors, *, int[]? path=None) */
static int einsum_standard_ops(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                               trw_value **result)
{
  const char *eq = NULL;
  size_t n = 0;
  if (nargs != 3 || trw_get_string(args[0], &eq) != 0 || trw_len(args[1], &n) != 0)
    return trw_decline(ctx, nargs, args, result, "not the equation form of einsum");
  if (!trw_is_none(args[2]))
    return trw_decline(ctx, nargs, args, result, "a contraction path is given");
  trw_value *tensors[MAX_OPERANDS];
  for (size_t i = 0; i < n && i < MAX_OPERANDS; i++)
    tensors[i] = trw_item(ctx, args[1], i);
  plan p;
  const char *why = parse_equation(eq, tensors, n, &p);
  if (why)
    return trw_decline(ctx, nargs, args, result, "equation \"%s\": %s", eq, why);

  /* Labels the output has, and those it or operand k or later has. */
  int out_mark[NLABELS] = {0};
  for (int i = 0; i < p.nout; i++)
    out_mark[p.out[i]] = 1;
  term acc = p.ops[0];
  for (int k = 0; k < p.nops; k++) {
    int later[NLABELS];
    memcpy(later, out_mark, sizeof later);
    for (int j = k + 1; j < p.nops; j++)
      for (int d = 0; d < p.ops[j].rank; d++)
        later[p.ops[j].labels[d]] = 1;
    if (k == 0) {
      /* The first operand's labels that nothing else has: summed now. */
      RW_CHECK(sum_unkept(ctx, &acc, later));
      continue;
    }
    /* So are operand k's, before the product. */
    term b = p.ops[k];
    int keep_b[NLABELS];
    memcpy(keep_b, later, sizeof keep_b);
    for (int d = 0; d < acc.rank; d++)
      keep_b[acc.labels[d]] = 1;
    RW_CHECK(sum_unkept(ctx, &b, keep_b));
    RW_CHECK(contract(ctx, &acc, &b, later));
  }
  if (acc.rank != p.nout)
    return trw_error(ctx, TRW_EINVAL, "einsum: %d labels left for an output of %d", acc.rank,
                     p.nout);
  RW_CHECK(permute_to(ctx, &acc, p.out));
  if (acc.v == p.ops[0].v) /* a plain copy ("ij->ij") */
    RW_CALL(acc.v, "aten::clone", acc.v, RW_NONE);
  *result = acc.v;
  return 0;
}

TRW_FUNCTION_REWRITER_EX("aten::einsum", "default", TRW_IR_ONNX, einsum_standard_ops,
                         below_opset_12);
