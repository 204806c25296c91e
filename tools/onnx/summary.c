/*
 * summary.c - what a model holds: operator counts, stored tensors, custom
 * domains and real inputs, for inspect and diff.
 */
#include <stdlib.h>
#include <string.h>

#include "trwonnx.h"

struct sum_walk {
  trw__onnx_summary *s;
  size_t opcap;
  size_t domcap;
};

static int add_domain(struct sum_walk *w, const char *domain)
{
  trw__onnx_summary *s = w->s;

  if (trw__onnx_domain_standard(domain))
    return 0;
  for (size_t i = 0; i < s->ncustom; i++)
    if (strcmp(s->custom_domains[i], domain) == 0)
      return 0;
  if (s->ncustom == w->domcap) {
    size_t cap = w->domcap ? w->domcap * 2 : 4;
    const char **grown = realloc(s->custom_domains, cap * sizeof(*grown));
    if (grown == NULL)
      return TRW_ENOMEM;
    s->custom_domains = grown;
    w->domcap = cap;
  }
  s->custom_domains[s->ncustom++] = domain;
  return 0;
}

static int count_node(const Onnx__NodeProto *node,
                      const Onnx__GraphProto *graph, int depth, void *user)
{
  struct sum_walk *w = user;
  trw__onnx_summary *s = w->s;
  const char *domain = trw__onnx_domain_name(node->domain);
  const char *op = node->op_type != NULL ? node->op_type : "";
  int rc;

  (void)graph;
  s->nodes++;
  if (depth > 0)
    s->subgraph_nodes++;
  rc = add_domain(w, domain);
  if (rc != 0)
    return rc;
  for (size_t i = 0; i < s->nops; i++) {
    if (strcmp(s->ops[i].op_type, op) == 0 &&
        strcmp(s->ops[i].domain, domain) == 0) {
      s->ops[i].count++;
      return 0;
    }
  }
  if (s->nops == w->opcap) {
    size_t cap = w->opcap ? w->opcap * 2 : 32;
    trw__onnx_opcount *grown = realloc(s->ops, cap * sizeof(*grown));
    if (grown == NULL)
      return TRW_ENOMEM;
    s->ops = grown;
    w->opcap = cap;
  }
  s->ops[s->nops].domain = domain;
  s->ops[s->nops].op_type = op;
  s->ops[s->nops].count = 1;
  s->nops++;
  return 0;
}

static int count_tensor(const Onnx__TensorProto *t, int is_init, void *user)
{
  trw__onnx_summary *s = ((struct sum_walk *)user)->s;
  uint64_t bytes = 0;

  if (t->has_data_location &&
      t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return 0; /* Counted from the external data references. */
  if (trw__onnx_tensor_bytes(t, &bytes) != 0)
    bytes = t->has_raw_data ? t->raw_data.len : 0;
  if (is_init) {
    s->inits++;
    s->init_bytes += bytes;
  } else {
    s->constants++;
    s->constant_bytes += bytes;
  }
  return 0;
}

static int cmp_ops(const void *a, const void *b)
{
  const trw__onnx_opcount *x = a, *y = b;
  int c = strcmp(x->domain, y->domain);
  return c != 0 ? c : strcmp(x->op_type, y->op_type);
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_initializer(const Onnx__GraphProto *g, const char *name)
{
  for (size_t i = 0; i < g->n_initializer; i++)
    if (g->initializer[i] != NULL && g->initializer[i]->name != NULL &&
        strcmp(g->initializer[i]->name, name) == 0)
      return 1;
  return 0;
}

static int list_inputs(trw__onnx_summary *s, const Onnx__GraphProto *g)
{
  if (g->n_input == 0)
    return 0;
  s->inputs = calloc(g->n_input, sizeof(*s->inputs));
  if (s->inputs == NULL)
    return TRW_ENOMEM;
  for (size_t i = 0; i < g->n_input; i++) {
    const Onnx__ValueInfoProto *vi = g->input[i];
    if (vi == NULL || (vi->name != NULL && is_initializer(g, vi->name)))
      continue;
    s->inputs[s->ninputs++] = vi;
  }
  return 0;
}

int trw__onnx_summarize(const trw__onnx_model *model, trw__onnx_summary *s)
{
  struct sum_walk w;
  trw__onnx_extref *refs = NULL;
  size_t nrefs = 0;
  int rc;

  if (model == NULL || model->proto == NULL || s == NULL)
    return TRW_EINVAL;
  memset(s, 0, sizeof(*s));
  memset(&w, 0, sizeof(w));
  w.s = s;
  for (size_t i = 0; i < model->proto->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *op = model->proto->opset_import[i];
    if (op != NULL && op->domain != NULL) {
      rc = add_domain(&w, op->domain);
      if (rc != 0)
        goto fail;
    }
  }
  rc = trw__onnx_walk_nodes(model->proto->graph, count_node, &w);
  if (rc == 0)
    rc = trw__onnx_walk_tensors(model->proto->graph, count_tensor, &w);
  if (rc == 0 && model->proto->graph != NULL)
    rc = list_inputs(s, model->proto->graph);
  if (rc != 0)
    goto fail;
  /* Bad references are reported by whoever checks them; here they only
   * count. */
  rc = trw__onnx_extdata(model, &refs, &nrefs, NULL, 0);
  if (rc != 0 && rc != TRW_ENOTFOUND && rc != TRW_ERANGE)
    goto fail;
  for (size_t i = 0; i < nrefs; i++) {
    s->ext_inits++;
    if (refs[i].need > 0)
      s->ext_bytes += (uint64_t)refs[i].need;
  }
  free(refs);
  if (s->nops > 1)
    qsort(s->ops, s->nops, sizeof(*s->ops), cmp_ops);
  if (s->ncustom > 1)
    qsort(s->custom_domains, s->ncustom, sizeof(*s->custom_domains), cmp_str);
  return 0;

fail:
  trw__onnx_summary_free(s);
  return rc;
}

void trw__onnx_summary_free(trw__onnx_summary *s)
{
  if (s == NULL)
    return;
  free(s->ops);
  free(s->custom_domains);
  free(s->inputs);
  memset(s, 0, sizeof(*s));
}
