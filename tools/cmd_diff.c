/*
 * cmd_diff.c - "torchrw diff A.onnx B.onnx [--json]": what changed between
 * two exports, in the terms that matter for deployment: operators, inputs
 * and outputs, opsets and weights.  Exit status as diff(1): 0 same, 1
 * different, 2 trouble.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "json_out.h"

/* Where changes go: printed as lines, or collected as JSON objects. */
struct out {
  const char *a, *b; /* the files, for the header of text output */
  int json;
  json_t *changes;
  int ok;
  size_t n;
};

static void help(void)
{
  printf("usage: torchrw diff A.onnx B.onnx [--json]\n"
         "\n"
         "Shows what changed between two exports: IR version, producer, "
         "opset imports,\noperator counts by (domain, type), graph inputs "
         "and outputs added, removed\nor changed (dtype or shape), "
         "initializer and external data counts and sizes.\nExternal weights "
         "are never read.\n"
         "\n"
         "  --json   print the changes as JSON\n"
         "  --help   show this help\n"
         "\n"
         "Exit status: 0 nothing changed, 1 something changed, 2 bad usage "
         "or bad input.\n");
}

/* Records one change; obj is stolen. */
static void change(struct out *o, json_t *obj, const char *fmt, ...)
    TRW_PRINTF(3, 4);

static void change(struct out *o, json_t *obj, const char *fmt, ...)
{
  o->n++;
  if (o->json) {
    trw__json_append(o->changes, obj, &o->ok);
    return;
  }
  json_decref(obj);
  if (o->n == 1)
    printf("--- %s\n+++ %s\n", o->a, o->b);
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
}

static json_t *num(int64_t v, int present)
{
  return present ? json_integer(v) : json_null();
}

static void diff_header(struct out *o, const Onnx__ModelProto *a,
                        const Onnx__ModelProto *b)
{
  const char *pa = a->producer_name ? a->producer_name : "";
  const char *pb = b->producer_name ? b->producer_name : "";
  const char *va = a->producer_version ? a->producer_version : "";
  const char *vb = b->producer_version ? b->producer_version : "";

  if (a->has_ir_version != b->has_ir_version ||
      a->ir_version != b->ir_version)
    change(o,
           json_pack("{s:s, s:o, s:o}", "what", "ir_version", "a",
                     num(a->ir_version, a->has_ir_version), "b",
                     num(b->ir_version, b->has_ir_version)),
           "ir_version: %lld -> %lld", (long long)a->ir_version,
           (long long)b->ir_version);
  if (strcmp(pa, pb) != 0 || strcmp(va, vb) != 0) {
    char xa[256], xb[256];
    snprintf(xa, sizeof(xa), "%s %s", pa, va);
    snprintf(xb, sizeof(xb), "%s %s", pb, vb);
    change(o,
           json_pack("{s:s, s:o, s:o}", "what", "producer", "a",
                     trw__json_str(xa), "b", trw__json_str(xb)),
           "producer: %s -> %s", xa, xb);
  }
}

static void diff_opsets(struct out *o, const Onnx__ModelProto *a,
                        const Onnx__ModelProto *b)
{
  /* Domains of a (changed or removed), then domains only b has. */
  for (int side = 0; side < 2; side++) {
    const Onnx__ModelProto *m = side == 0 ? a : b;
    for (size_t i = 0; i < m->n_opset_import; i++) {
      const char *dom = trw__onnx_domain_name(m->opset_import[i]->domain);
      int64_t va = trw__onnx_opset(a, dom), vb = trw__onnx_opset(b, dom);
      if (va == vb || (side == 1 && va != -1))
        continue;
      change(o,
             json_pack("{s:s, s:o, s:o, s:o}", "what", "opset", "domain",
                       trw__json_str(dom), "a", num(va, va >= 0), "b",
                       num(vb, vb >= 0)),
             "opset %s: %s%lld -> %s%lld", dom, va < 0 ? "(none) " : "",
             (long long)va, vb < 0 ? "(none) " : "", (long long)vb);
    }
  }
}

static int cmp_op(const trw__onnx_opcount *x, const trw__onnx_opcount *y)
{
  int c = strcmp(x->domain, y->domain);
  return c != 0 ? c : strcmp(x->op_type, y->op_type);
}

static void op_change(struct out *o, const trw__onnx_opcount *op, size_t ca,
                      size_t cb)
{
  change(o,
         json_pack("{s:s, s:o, s:o, s:I, s:I}", "what", "op", "domain",
                   trw__json_str(op->domain), "op_type",
                   trw__json_str(op->op_type), "a", (json_int_t)ca, "b",
                   (json_int_t)cb),
         "op %s %s: %zu -> %zu%s", op->domain, op->op_type, ca, cb,
         ca == 0 ? " (added)" : cb == 0 ? " (removed)" : "");
}

/* Both lists are sorted by (domain, op_type): merge them. */
static void diff_ops(struct out *o, const trw__onnx_summary *a,
                     const trw__onnx_summary *b)
{
  size_t i = 0, j = 0;

  while (i < a->nops || j < b->nops) {
    int c = i >= a->nops   ? 1
            : j >= b->nops ? -1
                           : cmp_op(&a->ops[i], &b->ops[j]);
    if (c < 0) {
      op_change(o, &a->ops[i], a->ops[i].count, 0);
      i++;
    } else if (c > 0) {
      op_change(o, &b->ops[j], 0, b->ops[j].count);
      j++;
    } else {
      if (a->ops[i].count != b->ops[j].count)
        op_change(o, &a->ops[i], a->ops[i].count, b->ops[j].count);
      i++;
      j++;
    }
  }
}

static const Onnx__ValueInfoProto *
find_value(const Onnx__ValueInfoProto *const *vis, size_t n, const char *name)
{
  for (size_t i = 0; i < n; i++)
    if (vis[i] != NULL && strcmp(vis[i]->name ? vis[i]->name : "", name) == 0)
      return vis[i];
  return NULL;
}

static void diff_values(struct out *o, const char *kind,
                        const Onnx__ValueInfoProto *const *va, size_t na,
                        const Onnx__ValueInfoProto *const *vb, size_t nb)
{
  char sa[256], sb[256];

  for (size_t i = 0; i < na; i++) {
    const Onnx__ValueInfoProto *x = va[i], *y;
    const char *name;
    if (x == NULL)
      continue;
    name = x->name ? x->name : "";
    y = find_value(vb, nb, name);
    trw__onnx_shape_str(trw__onnx_vi_shape(x), sa, sizeof(sa));
    if (y == NULL) {
      change(o,
             json_pack("{s:s, s:s, s:o, s:o, s:o}", "what", kind, "change",
                       "removed", "name", trw__json_str(name), "a",
                       trw__json_value(x), "b", json_null()),
             "%s removed: %s %s %s", kind, name,
             trw__onnx_dtype_name(trw__onnx_vi_dtype(x)), sa);
      continue;
    }
    trw__onnx_shape_str(trw__onnx_vi_shape(y), sb, sizeof(sb));
    if (trw__onnx_vi_dtype(x) != trw__onnx_vi_dtype(y) ||
        strcmp(sa, sb) != 0)
      change(o,
             json_pack("{s:s, s:s, s:o, s:o, s:o}", "what", kind, "change",
                       "changed", "name", trw__json_str(name), "a",
                       trw__json_value(x), "b", trw__json_value(y)),
             "%s changed: %s: %s %s -> %s %s", kind, name,
             trw__onnx_dtype_name(trw__onnx_vi_dtype(x)), sa,
             trw__onnx_dtype_name(trw__onnx_vi_dtype(y)), sb);
  }
  for (size_t i = 0; i < nb; i++) {
    const Onnx__ValueInfoProto *y = vb[i];
    const char *name;
    if (y == NULL)
      continue;
    name = y->name ? y->name : "";
    if (find_value(va, na, name) != NULL)
      continue;
    trw__onnx_shape_str(trw__onnx_vi_shape(y), sb, sizeof(sb));
    change(o,
           json_pack("{s:s, s:s, s:o, s:o, s:o}", "what", kind, "change",
                     "added", "name", trw__json_str(name), "a", json_null(),
                     "b", trw__json_value(y)),
           "%s added: %s %s %s", kind, name,
           trw__onnx_dtype_name(trw__onnx_vi_dtype(y)), sb);
  }
}

static void diff_weights(struct out *o, const char *what, size_t ca,
                         uint64_t ba, size_t cb, uint64_t bb)
{
  char x[32], y[32];

  if (ca == cb && ba == bb)
    return;
  change(o,
         json_pack("{s:s, s:{s:I, s:I}, s:{s:I, s:I}}", "what", what, "a",
                   "count", (json_int_t)ca, "bytes", (json_int_t)ba, "b",
                   "count", (json_int_t)cb, "bytes", (json_int_t)bb),
         "%s: %zu (%s) -> %zu (%s)", what, ca,
         trw__cmd_bytes(ba, x, sizeof(x)), cb, trw__cmd_bytes(bb, y, sizeof(y)));
}

static int run_diff(const char *pa, const char *pb, int json)
{
  trw__onnx_model *a = NULL, *b = NULL;
  trw__onnx_summary sa, sb;
  struct out o = {pa, pb, json, NULL, 1, 0};
  int rc;

  memset(&sa, 0, sizeof(sa));
  memset(&sb, 0, sizeof(sb));
  rc = trw__cmd_load(pa, &a, NULL, NULL);
  if (rc == 0)
    rc = trw__cmd_load(pb, &b, NULL, NULL);
  if (rc != 0)
    goto done;
  for (int side = 0; side < 2; side++) {
    rc = trw__onnx_summarize(side == 0 ? a : b, side == 0 ? &sa : &sb);
    if (rc != 0) {
      trw__cmd_error(side == 0 ? pa : pb, "%s",
                     rc == TRW_ENOMEM ? "out of memory"
                                      : "subgraphs nest too deeply");
      rc = TRW__EXIT_BAD;
      goto done;
    }
  }
  if (json && (o.changes = json_array()) == NULL) {
    trw__cmd_error(pa, "out of memory");
    rc = TRW__EXIT_BAD;
    goto done;
  }
  diff_header(&o, a->proto, b->proto);
  diff_opsets(&o, a->proto, b->proto);
  diff_ops(&o, &sa, &sb);
  diff_values(&o, "input", sa.inputs, sa.ninputs, sb.inputs, sb.ninputs);
  diff_values(&o, "output",
              (const Onnx__ValueInfoProto *const *)a->proto->graph->output,
              a->proto->graph->n_output,
              (const Onnx__ValueInfoProto *const *)b->proto->graph->output,
              b->proto->graph->n_output);
  diff_weights(&o, "initializers", sa.inits, sa.init_bytes, sb.inits,
               sb.init_bytes);
  diff_weights(&o, "external data", sa.ext_inits, sa.ext_bytes, sb.ext_inits,
               sb.ext_bytes);
  diff_weights(&o, "constants", sa.constants, sa.constant_bytes, sb.constants,
               sb.constant_bytes);
  rc = o.n == 0 ? TRW__EXIT_OK : TRW__EXIT_FOUND;
  if (json) {
    json_t *root = json_pack("{s:o, s:o, s:b, s:O}", "a", trw__json_str(pa),
                             "b", trw__json_str(pb), "identical", o.n == 0,
                             "changes", o.changes);
    if (!o.ok || root == NULL || trw__json_print(root) != 0) {
      trw__cmd_error(pa, "cannot write JSON (out of memory?)");
      rc = TRW__EXIT_BAD;
    }
    json_decref(root);
  }
done:
  json_decref(o.changes);
  trw__onnx_summary_free(&sa);
  trw__onnx_summary_free(&sb);
  trw__onnx_free(a);
  trw__onnx_free(b);
  return rc;
}

int trw__cmd_diff(int argc, char **argv)
{
  const char *pos[2];
  int help_flag, npos, json = 0, rc;
  const trw__opt opts[] = {{"--json", 0, NULL, &json}, {NULL, 0, NULL, NULL}};

  rc = trw__cmd_parse("diff", argc, argv, opts, &help_flag, pos, 2, &npos);
  if (rc != 0)
    return rc;
  if (help_flag) {
    help();
    return TRW__EXIT_OK;
  }
  if (npos != 2) {
    fprintf(stderr, "torchrw diff: expected A.onnx and B.onnx (see torchrw "
                    "diff --help)\n");
    return TRW__EXIT_BAD;
  }
  return run_diff(pos[0], pos[1], json);
}
