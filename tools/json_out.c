/*
 * json_out.c - JSON for the --json outputs of the torchrw command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_out.h"

void trw__json_set(json_t *obj, const char *key, json_t *val, int *ok)
{
  if (val == NULL || json_object_set_new(obj, key, val) != 0)
    *ok = 0;
}

void trw__json_append(json_t *arr, json_t *val, int *ok)
{
  if (val == NULL || json_array_append_new(arr, val) != 0)
    *ok = 0;
}

json_t *trw__json_str(const char *s)
{
  json_t *j;
  char *copy;

  if (s == NULL)
    s = "";
  j = json_string(s);
  if (j != NULL)
    return j;
  /* json_string() refuses invalid UTF-8: keep ASCII, mark the rest. */
  copy = strdup(s);
  if (copy == NULL)
    return NULL;
  for (char *p = copy; *p != '\0'; p++)
    if ((unsigned char)*p >= 0x80)
      *p = '?';
  j = json_string(copy);
  free(copy);
  return j;
}

json_t *trw__json_shape(const Onnx__TensorShapeProto *shape)
{
  json_t *arr;
  int ok = 1;

  if (shape == NULL)
    return json_null();
  arr = json_array();
  if (arr == NULL)
    return NULL;
  for (size_t i = 0; i < shape->n_dim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = shape->dim[i];
    if (d != NULL &&
        d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
      trw__json_append(arr, json_integer(d->dim_value), &ok);
    else if (d != NULL &&
             d->value_case ==
                 ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
             d->dim_param != NULL && d->dim_param[0] != '\0')
      trw__json_append(arr, trw__json_str(d->dim_param), &ok);
    else
      trw__json_append(arr, json_null(), &ok);
  }
  if (!ok) {
    json_decref(arr);
    return NULL;
  }
  return arr;
}

json_t *trw__json_value(const Onnx__ValueInfoProto *vi)
{
  json_t *obj = json_object();
  int ok = 1;

  if (obj == NULL)
    return NULL;
  trw__json_set(obj, "name", trw__json_str(vi->name), &ok);
  trw__json_set(obj, "dtype", json_string(trw__onnx_dtype_name(
                                  trw__onnx_vi_dtype(vi))), &ok);
  trw__json_set(obj, "shape", trw__json_shape(trw__onnx_vi_shape(vi)), &ok);
  if (!ok) {
    json_decref(obj);
    return NULL;
  }
  return obj;
}

static json_t *values(const Onnx__ValueInfoProto *const *vis, size_t n)
{
  json_t *arr = json_array();
  int ok = 1;

  if (arr == NULL)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (vis[i] != NULL)
      trw__json_append(arr, trw__json_value(vis[i]), &ok);
  if (!ok) {
    json_decref(arr);
    return NULL;
  }
  return arr;
}

static json_t *nodes(const trw__onnx_summary *s)
{
  json_t *obj = json_object(), *ops = json_array();
  int ok = obj != NULL && ops != NULL;

  for (size_t i = 0; ok && i < s->nops; i++)
    trw__json_append(ops, json_pack("{s:o, s:o, s:I}", "domain",
                                     trw__json_str(s->ops[i].domain),
                                     "op_type",
                                     trw__json_str(s->ops[i].op_type),
                                     "count", (json_int_t)s->ops[i].count),
                     &ok);
  if (ok) {
    trw__json_set(obj, "total", json_integer((json_int_t)s->nodes), &ok);
    trw__json_set(obj, "in_subgraphs",
                  json_integer((json_int_t)s->subgraph_nodes), &ok);
    trw__json_set(obj, "by_op", ops, &ok);
    ops = NULL;
  }
  json_decref(ops);
  if (!ok) {
    json_decref(obj);
    return NULL;
  }
  return obj;
}

static json_t *extrefs(const trw__onnx_extref *refs, size_t n)
{
  json_t *arr = json_array();
  int ok = arr != NULL;

  for (size_t i = 0; ok && i < n; i++) {
    json_t *r = json_object();
    if (r == NULL) {
      ok = 0;
      break;
    }
    trw__json_set(r, "tensor", trw__json_str(refs[i].tensor), &ok);
    trw__json_set(r, "location", trw__json_str(refs[i].location), &ok);
    trw__json_set(r, "offset", json_integer(refs[i].offset), &ok);
    trw__json_set(r, "length", refs[i].need >= 0 ? json_integer(refs[i].need)
                                                 : json_null(), &ok);
    trw__json_set(r, "file_bytes", refs[i].file_bytes >= 0
                                       ? json_integer(refs[i].file_bytes)
                                       : json_null(), &ok);
    trw__json_append(arr, r, &ok);
  }
  if (!ok) {
    json_decref(arr);
    return NULL;
  }
  return arr;
}

json_t *trw__json_inspect(const trw__onnx_model *model,
                          const trw__onnx_summary *s,
                          const trw__onnx_extref *refs, size_t nrefs)
{
  const Onnx__ModelProto *m = model->proto;
  const Onnx__GraphProto *g = m->graph;
  json_t *root = json_object(), *opsets = json_array(), *doms = json_array();
  int ok = root != NULL && opsets != NULL && doms != NULL;

  for (size_t i = 0; ok && i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *op = m->opset_import[i];
    trw__json_append(opsets, json_pack("{s:o, s:I}", "domain",
                                       trw__json_str(trw__onnx_domain_name(
                                           op->domain)),
                                       "version",
                                       (json_int_t)(op->has_version
                                                        ? op->version
                                                        : -1)),
                     &ok);
  }
  for (size_t i = 0; ok && i < s->ncustom; i++)
    trw__json_append(doms, trw__json_str(s->custom_domains[i]), &ok);
  if (!ok) {
    json_decref(root);
    json_decref(opsets);
    json_decref(doms);
    return NULL;
  }
  trw__json_set(root, "file", trw__json_str(model->path), &ok);
  trw__json_set(root, "file_bytes", json_integer((json_int_t)model->file_bytes),
                &ok);
  trw__json_set(root, "ir_version",
                m->has_ir_version ? json_integer(m->ir_version) : json_null(),
                &ok);
  trw__json_set(root, "opset_import", opsets, &ok);
  trw__json_set(root, "producer",
                json_pack("{s:o, s:o}", "name",
                          trw__json_str(m->producer_name), "version",
                          trw__json_str(m->producer_version)),
                &ok);
  trw__json_set(root, "graph_name", trw__json_str(g->name), &ok);
  trw__json_set(root, "inputs", values(s->inputs, s->ninputs), &ok);
  trw__json_set(root, "outputs",
                values((const Onnx__ValueInfoProto *const *)g->output,
                       g->n_output), &ok);
  trw__json_set(root, "nodes", nodes(s), &ok);
  trw__json_set(root, "initializers",
                json_pack("{s:I, s:I, s:I, s:I}", "count", (json_int_t)s->inits,
                          "bytes", (json_int_t)s->init_bytes,
                          "external_count", (json_int_t)s->ext_inits,
                          "external_bytes", (json_int_t)s->ext_bytes),
                &ok);
  trw__json_set(root, "constants",
                json_pack("{s:I, s:I}", "count", (json_int_t)s->constants,
                          "bytes", (json_int_t)s->constant_bytes),
                &ok);
  trw__json_set(root, "custom_domains", doms, &ok);
  trw__json_set(root, "external_data", extrefs(refs, nrefs), &ok);
  if (!ok) {
    json_decref(root);
    return NULL;
  }
  return root;
}

int trw__json_print(const json_t *root)
{
  if (json_dumpf(root, stdout, JSON_INDENT(2)) != 0)
    return -1;
  return fputc('\n', stdout) == EOF ? -1 : 0;
}
