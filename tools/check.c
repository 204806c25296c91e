/*
 * check.c - applies a backend capability table to a model.
 *
 * The rules are generic; what a backend supports is data (see check.h and
 * data/backends/README.md).  Types and shapes come from what the file
 * declares (graph inputs and outputs, value_info, initializers, Constant
 * nodes; check_values.c); no shape inference is run, so a rule about a
 * dtype is only applied where the file says what the dtype is.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "check_values.h"

struct ctx {
  const trw__onnx_model *model;
  const json_t *table;
  const char *backend;
  struct trw__values vals;
  struct trw__folding fold;
  int fold_before;     /* folded nodes are computed, not converted */
  int graph_dynamic;   /* some graph input has a non-static shape */
  trw__violation_fn fn;
  void *user;
  int count;
  int stop;            /* fn asked to stop, or memory ran out */
  int nomem;
  size_t index;        /* nodes seen, for unnamed ones */
  char *err;
  size_t errlen;
};

/* ------------------------------------------------------------------------ */
/* Values                                                                    */

static int learn_node(const Onnx__NodeProto *node,
                      const Onnx__GraphProto *graph, int depth, void *user)
{
  struct ctx *c = user;

  if (graph->n_node > 0 && graph->node[0] == node &&
      trw__values_learn_graph(&c->vals, graph) != 0)
    return TRW_ENOMEM;
  return trw__values_learn_node(&c->vals, node, depth, &c->fold);
}

/* ------------------------------------------------------------------------ */
/* Reporting                                                                 */

static const char *source_of(const struct ctx *c, const json_t *rule,
                             const json_t *entry, const json_t *domain)
{
  const json_t *objs[4] = {rule, entry, domain, c->table};
  for (int i = 0; i < 4; i++) {
    const char *s = objs[i] ? json_string_value(json_object_get(objs[i],
                                                                "source"))
                            : NULL;
    if (s != NULL)
      return s;
  }
  return "no source given";
}

static void report(struct ctx *c, const char *node, const char *what,
                   const char *source, const json_t *rule, const char *fmt,
                   ...) TRW_PRINTF(6, 7);

static void report(struct ctx *c, const char *node, const char *what,
                   const char *source, const json_t *rule, const char *fmt,
                   ...)
{
  char msg[1024];
  const char *note = rule ? json_string_value(json_object_get(rule, "note"))
                          : NULL;
  size_t len;
  va_list ap;

  if (c->stop)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  len = strlen(msg);
  if (note != NULL && len < sizeof(msg) - 3)
    snprintf(msg + len, sizeof(msg) - len, " - %s", note);
  c->count++;
  if (c->fn(node, what, msg, source, c->user) != 0)
    c->stop = 1;
}

/* ------------------------------------------------------------------------ */
/* Rules                                                                     */

static int get_int(const json_t *obj, const char *key, int64_t *out)
{
  const json_t *j = json_object_get(obj, key);
  if (!json_is_integer(j))
    return -1;
  *out = json_integer_value(j);
  return 0;
}

/* 1 when rule applies at opset (its "since" / "until"), else 0. */
static int in_range(const json_t *rule, int64_t opset)
{
  int64_t lo, hi;
  if (opset < 0)
    return 1;
  if (get_int(rule, "since", &lo) == 0 && opset < lo)
    return 0;
  if (get_int(rule, "until", &hi) == 0 && opset > hi)
    return 0;
  return 1;
}

static int in_list(const json_t *list, const char *s, int64_t i, int is_str)
{
  size_t k;
  const json_t *v;

  json_array_foreach(list, k, v) {
    if (is_str && json_is_string(v) && strcmp(json_string_value(v), s) == 0)
      return 1;
    if (!is_str && json_is_integer(v) && json_integer_value(v) == i)
      return 1;
  }
  return 0;
}

static void list_str(const json_t *list, char *buf, size_t buflen)
{
  size_t k, used = 0;
  const json_t *v;

  buf[0] = '\0';
  json_array_foreach(list, k, v) {
    char one[64];
    int w;
    if (json_is_string(v))
      snprintf(one, sizeof(one), "%s", json_string_value(v));
    else
      snprintf(one, sizeof(one), "%lld", (long long)json_integer_value(v));
    w = snprintf(buf + used, buflen - used, "%s%s", k ? ", " : "", one);
    if (w < 0 || (size_t)w >= buflen - used)
      break;
    used += (size_t)w;
  }
}

/* Attribute an (a dtype, as Cast's to) of value want must equal input
 * idx's dtype; an input whose dtype the file does not say is judged as
 * different, since the converter keeps such a node. */
static void check_same_dtype(struct ctx *c, const Onnx__NodeProto *node,
                             const char *name, const json_t *entry,
                             const json_t *dom, const json_t *r,
                             const char *an, int64_t want, size_t idx)
{
  const struct trw__value *v = trw__values_lookup(&c->vals, node->input[idx]);
  const char *to = want > 0 && want < 64 ? trw__onnx_dtype_name((int32_t)want)
                                         : "?";

  if (v != NULL && v->dtype != 0 && v->dtype == want)
    return;
  if (v != NULL && v->dtype != 0)
    report(c, name, node->op_type, source_of(c, r, entry, dom), r,
           "attribute %s=%s changes input %zu ('%.80s') from %s, which is "
           "not supported", an, to, idx, node->input[idx],
           trw__onnx_dtype_name(v->dtype));
  else
    report(c, name, node->op_type, source_of(c, r, entry, dom), r,
           "attribute %s=%s: input %zu ('%.80s') has no dtype the file "
           "declares or that follows from it, so it may change the dtype, "
           "which is not supported", an, to, idx, node->input[idx]);
}

static void check_attributes(struct ctx *c, const Onnx__NodeProto *node,
                             const char *name, const json_t *entry,
                             const json_t *dom, int64_t opset)
{
  const json_t *rules = json_object_get(entry, "attributes"), *r;
  size_t k;

  json_array_foreach(rules, k, r) {
    const char *an = json_string_value(json_object_get(r, "name"));
    const json_t *allowed = json_object_get(r, "allowed");
    const json_t *forbidden = json_object_get(r, "forbidden");
    const json_t *def = json_object_get(r, "default");
    const Onnx__AttributeProto *a;
    char sval[128], shown[160], list[512];
    int64_t ival = 0, bound;
    int is_str;

    if (an == NULL || !in_range(r, opset))
      continue;
    a = trw__node_attr(node, an);
    /* An attribute the operator does not have at this opset (the file
     * is not valid ONNX). */
    if (json_is_true(json_object_get(r, "absent"))) {
      if (a != NULL)
        report(c, name, node->op_type, source_of(c, r, entry, dom), r,
               "attribute %s is not an attribute of %s at opset %lld", an,
               node->op_type, (long long)opset);
      continue;
    }
    /* A dtype attribute that must be what the input already has (a Cast
     * the converter drops as a no-op). */
    if (get_int(r, "same_dtype_as_input", &bound) == 0) {
      if (a != NULL && a->has_i && bound >= 0 && (size_t)bound < node->n_input)
        check_same_dtype(c, node, name, entry, dom, r, an, a->i, (size_t)bound);
      continue;
    }
    if (a != NULL && a->has_s) {
      is_str = 1;
      snprintf(sval, sizeof(sval), "%.*s", (int)(a->s.len < 100 ? a->s.len
                                                                : 100),
               a->s.data ? (const char *)a->s.data : "");
    } else if (a != NULL && a->has_i) {
      is_str = 0;
      ival = a->i;
    } else if (json_is_string(def)) {
      is_str = 1;
      snprintf(sval, sizeof(sval), "%s", json_string_value(def));
    } else if (json_is_integer(def)) {
      is_str = 0;
      ival = json_integer_value(def);
    } else {
      continue; /* Not given, no default: nothing to judge. */
    }
    if (is_str)
      snprintf(shown, sizeof(shown), "%s='%s'%s", an, sval,
               a == NULL ? " (the default)" : "");
    else
      snprintf(shown, sizeof(shown), "%s=%lld%s", an, (long long)ival,
               a == NULL ? " (the default)" : "");
    if (json_is_array(allowed) && !in_list(allowed, sval, ival, is_str)) {
      list_str(allowed, list, sizeof(list));
      report(c, name, node->op_type, source_of(c, r, entry, dom), r,
             "attribute %s is not supported (supported: %s)", shown, list);
    } else if (json_is_array(forbidden) &&
               in_list(forbidden, sval, ival, is_str)) {
      report(c, name, node->op_type, source_of(c, r, entry, dom), r,
             "attribute %s is not supported", shown);
    } else if (!is_str && get_int(r, "max", &bound) == 0 && ival > bound) {
      report(c, name, node->op_type, source_of(c, r, entry, dom), r,
             "attribute %s exceeds the maximum %lld", shown,
             (long long)bound);
    } else if (!is_str && get_int(r, "min", &bound) == 0 && ival < bound) {
      report(c, name, node->op_type, source_of(c, r, entry, dom), r,
             "attribute %s is below the minimum %lld", shown,
             (long long)bound);
    }
  }
}

/* One input rule on input idx of the node. */
static void check_input(struct ctx *c, const Onnx__NodeProto *node,
                        const char *name, const json_t *entry,
                        const json_t *dom, const json_t *r, size_t idx)
{
  const char *label = json_string_value(json_object_get(r, "name"));
  const struct trw__value *v;
  const char *in = node->input[idx];
  int64_t bound, max, min;
  char what[160];

  if (in == NULL || in[0] == '\0')
    return; /* An omitted optional input. */
  snprintf(what, sizeof(what), "input %lld '%.80s'%s%.40s%s", (long long)idx,
           in, label ? " (" : "", label ? label : "", label ? ")" : "");
  v = trw__values_lookup(&c->vals, in);
  if (json_is_true(json_object_get(r, "constant")) &&
      !trw__value_is_constant(v) && !(c->fold.enabled && v != NULL && v->folded)) {
    if (c->fold.enabled)
      report(c, name, node->op_type, source_of(c, r, entry, dom), r,
             "%s must be known when the model is converted (a constant, "
             "or computed from constants and input shapes), but it "
             "depends on the input data", what);
    else
      report(c, name, node->op_type, source_of(c, r, entry, dom), r,
             "%s must be a constant (an initializer or a Constant node's "
             "output), but it is computed at run time", what);
    return;
  }
  if (get_int(r, "max", &bound) == 0 && v != NULL &&
      trw__value_const_max(v, &max) == 0 && max > bound)
    report(c, name, node->op_type, source_of(c, r, entry, dom), r,
           "%s is %lld, above the maximum %lld", what, (long long)max,
           (long long)bound);
  if (get_int(r, "min", &bound) == 0 && v != NULL &&
      trw__value_const_range(v, &min, &max) == 0 && min < bound)
    report(c, name, node->op_type, source_of(c, r, entry, dom), r,
           "%s is %lld, below the minimum %lld", what, (long long)min,
           (long long)bound);
  if (get_int(r, "max_elements", &bound) == 0 && v != NULL &&
      trw__value_elements(v, &max) == 0 && max > bound)
    report(c, name, node->op_type, source_of(c, r, entry, dom), r,
           "%s has %lld elements, more than %lld", what, (long long)max,
           (long long)bound);
  if (get_int(r, "max_rank", &bound) == 0 && v != NULL &&
      trw__value_rank(v, &max) == 0 && max > bound)
    report(c, name, node->op_type, source_of(c, r, entry, dom), r,
           "%s has rank %lld, more than %lld", what, (long long)max,
           (long long)bound);
  /* Only a constant's count: a value computed empty at run time is
   * another thing to an engine than an empty constant in the file. */
  if (get_int(r, "min_elements", &bound) == 0 && v != NULL &&
      trw__value_is_constant(v) && trw__value_elements(v, &max) == 0 && max < bound)
    report(c, name, node->op_type, source_of(c, r, entry, dom), r,
           "%s is a constant of %lld elements, fewer than %lld", what,
           (long long)max, (long long)bound);
}

/* Whether node sets one of the attributes named in list (a JSON array of
 * strings; NULL for none). */
static int sets_any(const Onnx__NodeProto *node, const json_t *list)
{
  size_t i;
  const json_t *n;

  json_array_foreach(list, i, n) {
    const char *an = json_string_value(n);
    if (an != NULL && trw__node_attr(node, an) != NULL)
      return 1;
  }
  return 0;
}

static void check_inputs(struct ctx *c, const Onnx__NodeProto *node,
                         const char *name, const json_t *entry,
                         const json_t *dom, int64_t opset)
{
  const json_t *rules = json_object_get(entry, "inputs"), *r;
  size_t k;

  json_array_foreach(rules, k, r) {
    int64_t idx;

    int64_t unless;

    if (get_int(r, "index", &idx) != 0 || idx < 0 || !in_range(r, opset) ||
        (size_t)idx >= node->n_input)
      continue;
    /* "unless_constant": I, the rule does not apply when input I is a
     * constant (Gather's indices from a constant table: an embedding) and
     * the node sets none of the attributes "unless_without" lists. */
    if (get_int(r, "unless_constant", &unless) == 0 && unless >= 0 &&
        (size_t)unless < node->n_input &&
        trw__value_is_constant(trw__values_lookup(&c->vals, node->input[unless])) &&
        !sets_any(node, json_object_get(r, "unless_without")))
      continue;
    /* A variadic input (Loop's v_initial, Concat's inputs) is every input
     * from its index on. */
    if (json_is_true(json_object_get(r, "variadic"))) {
      for (size_t i = (size_t)idx; i < node->n_input; i++)
        check_input(c, node, name, entry, dom, r, i);
    } else {
      check_input(c, node, name, entry, dom, r, (size_t)idx);
    }
  }
}

/* Whether the node's tensors have dynamic shapes: an input whose shape is
 * declared and not static says yes; declared static shapes say no; with
 * nothing declared, the graph's inputs decide. */
static int node_dynamic(const struct ctx *c, const Onnx__NodeProto *node)
{
  int known = 0;

  for (size_t i = 0; i < node->n_input; i++) {
    const struct trw__value *v = trw__values_lookup(&c->vals, node->input[i]);
    if (v == NULL)
      continue;
    if (trw__value_is_constant(v)) {
      known = 1;
    } else if (v->shape != NULL) {
      known = 1;
      if (!v->is_static)
        return 1;
    }
  }
  return known ? 0 : c->graph_dynamic;
}

static void check_dtypes(struct ctx *c, const Onnx__NodeProto *node,
                         const char *name, const json_t *entry,
                         const json_t *dom, int64_t opset)
{
  const json_t *rules = json_object_get(entry, "dtypes"), *r;
  size_t k;

  json_array_foreach(rules, k, r) {
    const json_t *forbidden = json_object_get(r, "forbidden");
    const char *when = json_string_value(json_object_get(r, "when"));
    int dynamic_only = when != NULL && strcmp(when, "dynamic") == 0;

    if (!json_is_array(forbidden) || !in_range(r, opset))
      continue;
    if (dynamic_only && !node_dynamic(c, node))
      continue;
    for (size_t i = 0; i < node->n_input; i++) {
      const struct trw__value *v = trw__values_lookup(&c->vals, node->input[i]);
      const char *dt;
      if (v == NULL || v->dtype == 0)
        continue;
      dt = trw__onnx_dtype_name(v->dtype);
      if (!in_list(forbidden, dt, 0, 1))
        continue;
      report(c, name, node->op_type, source_of(c, r, entry, dom), r,
             "input %zu ('%s') has dtype %s, which is not supported%s", i,
             node->input[i], dt,
             dynamic_only ? " when shapes are dynamic" : "");
      break;
    }
  }
}

/* Whether a converter that folds before converting computes this node
 * itself: every output is folded. */
static int computed_by_converter(const struct ctx *c,
                                 const Onnx__NodeProto *node)
{
  if (!c->fold_before || node->n_output == 0)
    return 0;
  for (size_t i = 0; i < node->n_output; i++) {
    const struct trw__value *v = trw__values_lookup(&c->vals, node->output[i]);
    if (node->output[i] != NULL && node->output[i][0] != '\0' &&
        (v == NULL || !v->folded))
      return 0;
  }
  return 1;
}

static int check_node(const Onnx__NodeProto *node,
                      const Onnx__GraphProto *graph, int depth, void *user)
{
  struct ctx *c = user;
  const char *op = node->op_type != NULL ? node->op_type : "";
  const char *domname = trw__onnx_domain_name(node->domain);
  const json_t *domains = json_object_get(c->table, "domains");
  const json_t *dom = json_object_get(domains, domname);
  const json_t *ops, *entry;
  int64_t opset = trw__onnx_opset(c->model->proto, domname);
  char unnamed[160];
  const char *name = node->name;

  (void)graph;
  c->index++;
  if (depth == 0 && computed_by_converter(c, node))
    return c->stop;
  if (name == NULL || name[0] == '\0') {
    snprintf(unnamed, sizeof(unnamed), "(unnamed %.100s #%zu)", op,
             c->index);
    name = unnamed;
  }
  if (!json_is_object(dom)) {
    report(c, name, op, json_string_value(json_object_get(
                            c->table, "domains_source"))
                            ? json_string_value(json_object_get(
                                  c->table, "domains_source"))
                            : source_of(c, NULL, NULL, NULL),
           NULL, "domain '%s' is not supported by %s", domname, c->backend);
    return c->stop;
  }
  ops = json_object_get(dom, "ops");
  if (json_is_string(ops) && strcmp(json_string_value(ops), "*") == 0)
    entry = json_object_get(json_object_get(dom, "constraints"), op);
  else
    entry = json_object_get(ops, op);
  if (entry == NULL && !json_is_string(ops)) {
    report(c, name, op, source_of(c, NULL, NULL, dom), NULL,
           "operator is not supported by %s", c->backend);
    return c->stop;
  }
  if (entry == NULL || json_is_true(entry))
    return c->stop;
  if (json_is_false(entry) ||
      json_is_false(json_object_get(entry, "supported"))) {
    report(c, name, op, source_of(c, NULL, entry, dom), entry,
           "operator is not supported by %s", c->backend);
    return c->stop;
  }
  if (!in_range(entry, opset)) {
    int64_t lo = 1, hi = -1;
    get_int(entry, "since", &lo);
    get_int(entry, "until", &hi);
    if (hi >= 0 && lo <= 1)
      report(c, name, op, source_of(c, NULL, entry, dom), NULL,
             "supported by %s only up to opset %lld; the model uses opset "
             "%lld", c->backend, (long long)hi, (long long)opset);
    else if (hi >= 0)
      report(c, name, op, source_of(c, NULL, entry, dom), NULL,
             "supported by %s only for opset %lld to %lld; the model uses "
             "opset %lld", c->backend, (long long)lo, (long long)hi,
             (long long)opset);
    else
      report(c, name, op, source_of(c, NULL, entry, dom), NULL,
             "supported by %s only from opset %lld; the model uses opset "
             "%lld", c->backend, (long long)lo, (long long)opset);
  }
  check_attributes(c, node, name, entry, dom, opset);
  check_inputs(c, node, name, entry, dom, opset);
  check_dtypes(c, node, name, entry, dom, opset);
  return c->stop;
}

/* graph.external_data with "supported": false: the backend cannot read
 * initializers stored outside the file.  One violation for the model,
 * naming how many and the first file they are in. */
static void check_external_data(struct ctx *c, const json_t *rule)
{
  const Onnx__GraphProto *g = c->model->proto->graph;
  const char *where = NULL;
  size_t n = 0;

  if (!json_is_object(rule) || !json_is_false(json_object_get(rule, "supported")))
    return;
  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    if (!t->has_data_location ||
        t->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
      continue;
    n++;
    for (size_t k = 0; where == NULL && k < t->n_external_data; k++)
      if (t->external_data[k] != NULL && t->external_data[k]->key != NULL &&
          strcmp(t->external_data[k]->key, "location") == 0)
        where = t->external_data[k]->value;
  }
  if (n > 0)
    report(c, "(model)", "initializers", source_of(c, rule, NULL, NULL), rule,
           "%zu initializer%s stored outside the file (external data, in "
           "'%.200s'); %s cannot read external data",
           n, n == 1 ? " is" : "s are", where != NULL ? where : "?",
           c->backend);
}

/* A converter that folds before converting (graph.folding) computes a
 * graph whose every output is folded itself, and leaves the engine a
 * graph without nodes or inputs. */
static void check_folded_away(struct ctx *c, const json_t *rule)
{
  const Onnx__GraphProto *g = c->model->proto->graph;

  if (!c->fold_before || g->n_output == 0)
    return;
  for (size_t i = 0; i < g->n_output; i++) {
    const struct trw__value *v =
        trw__values_lookup(&c->vals, g->output[i]->name);
    if (v == NULL || !v->folded)
      return;
  }
  report(c, "(model)", "outputs", source_of(c, rule, NULL, NULL), NULL,
         "every output is computed from constants and input shapes, which "
         "%s's converter folds away: no graph is left to run", c->backend);
}

static void check_graph_rules(struct ctx *c)
{
  const Onnx__ModelProto *m = c->model->proto;
  const Onnx__GraphProto *g = m->graph;
  const json_t *graph = json_object_get(c->table, "graph");
  const json_t *domains = json_object_get(c->table, "domains");
  const json_t *rule = json_object_get(graph, "static_input_shapes");

  /* Opset range per imported domain. */
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const char *dn = trw__onnx_domain_name(m->opset_import[i]->domain);
    const json_t *dom = json_object_get(domains, dn);
    const json_t *range = json_object_get(dom, "opset");
    int64_t v = m->opset_import[i]->version, lo, hi;
    if (!json_is_object(range))
      continue;
    if (get_int(range, "min", &lo) == 0 && v < lo)
      report(c, "(model)", "opset", source_of(c, range, dom, NULL), range,
             "%s opset %lld is below the lowest %s supports (%lld)", dn,
             (long long)v, c->backend, (long long)lo);
    if (get_int(range, "max", &hi) == 0 && v > hi)
      report(c, "(model)", "opset", source_of(c, range, dom, NULL), range,
             "%s opset %lld is above the highest %s supports (%lld)", dn,
             (long long)v, c->backend, (long long)hi);
  }
  check_external_data(c, json_object_get(graph, "external_data"));
  check_folded_away(c, json_object_get(graph, "folding"));
  for (size_t i = 0; i < g->n_input; i++) {
    const Onnx__ValueInfoProto *vi = g->input[i];
    const struct trw__value *v = trw__values_lookup(&c->vals, vi->name);
    const Onnx__TensorShapeProto *shape = trw__onnx_vi_shape(vi);
    const char *name = vi->name != NULL ? vi->name : "";
    char buf[256];

    if (v != NULL && v->tensor != NULL)
      continue; /* An initializer listed as an input. */
    if (!trw__onnx_shape_static(shape))
      c->graph_dynamic = 1;
    if (!json_is_object(rule) || trw__onnx_shape_static(shape))
      continue;
    report(c, name, "graph input", source_of(c, rule, NULL, NULL), rule,
           "shape %s is not static; %s needs fixed input shapes",
           trw__onnx_shape_str(shape, buf, sizeof(buf)), c->backend);
  }
}

/* graph.folding: what the converter computes before it runs the model
 * (see struct trw__folding), e.g.
 *   {"shape_of": "any", "before_conversion": true, "source": "..."} */
static int read_folding(struct ctx *c, const json_t *f)
{
  const char *shape_of;
  const json_t *before;

  if (f == NULL)
    return 0;
  shape_of = json_string_value(json_object_get(f, "shape_of"));
  before = json_object_get(f, "before_conversion");
  if (!json_is_object(f) || shape_of == NULL ||
      (strcmp(shape_of, "any") != 0 && strcmp(shape_of, "static") != 0) ||
      !json_is_boolean(before)) {
    snprintf(c->err, c->errlen,
             "capability table's graph.folding must be an object with "
             "\"shape_of\": \"any\" or \"static\" and \"before_conversion\": "
             "true or false");
    return TRW_ECONFIG;
  }
  c->fold.enabled = 1;
  c->fold.shape_of_any = strcmp(shape_of, "any") == 0;
  c->fold_before = json_is_true(before);
  return 0;
}

static int noop_violation(const char *node, const char *what,
                          const char *rule, const char *source, void *user)
{
  (void)node, (void)what, (void)rule, (void)source, (void)user;
  return 0;
}

int trw__check_model(const trw__onnx_model *model, const json_t *table,
                     trw__violation_fn fn, void *user, char *err,
                     size_t errlen)
{
  struct ctx c;
  int rc;

  if (model == NULL || model->proto == NULL || table == NULL)
    return TRW_EINVAL;
  memset(&c, 0, sizeof(c));
  c.model = model;
  c.table = table;
  c.backend = json_string_value(json_object_get(table, "backend"));
  if (c.backend == NULL)
    c.backend = "this backend";
  c.fn = fn != NULL ? fn : noop_violation;
  c.user = user;
  c.err = err;
  c.errlen = errlen;
  if (!json_is_object(json_object_get(table, "domains"))) {
    snprintf(err, errlen, "capability table has no \"domains\" object");
    return TRW_ECONFIG;
  }
  if ((rc = read_folding(&c, json_object_get(json_object_get(table, "graph"),
                                             "folding"))) != 0)
    return rc;
  rc = trw__values_learn_graph(&c.vals, model->proto->graph);
  if (rc == 0)
    rc = trw__onnx_walk_nodes(model->proto->graph, learn_node, &c);
  if (rc == 0) {
    check_graph_rules(&c);
    rc = trw__onnx_walk_nodes(model->proto->graph, check_node, &c);
    if (rc == 1)
      rc = 0; /* Stopped by the callback. */
  }
  trw__values_free(&c.vals);
  if (rc != 0) {
    snprintf(err, errlen, "%s", rc == TRW_ENOMEM ? "out of memory"
                                                 : "subgraphs nest too deeply");
    return rc;
  }
  return c.count;
}
