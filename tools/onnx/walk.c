/*
 * walk.c - visits the nodes and stored tensors of a graph and its
 * subgraphs.
 */
#include <string.h>

#include "trwonnx.h"

static int walk_nodes(const Onnx__GraphProto *g, trw__onnx_node_fn fn,
                      void *user, int depth)
{
  if (g == NULL)
    return 0;
  if (depth > TRW__ONNX_MAX_GRAPH_DEPTH)
    return TRW_ERANGE;
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *node = g->node[i];
    int rc;

    if (node == NULL)
      continue;
    rc = fn(node, g, depth, user);
    if (rc != 0)
      return rc;
    for (size_t a = 0; a < node->n_attribute; a++) {
      const Onnx__AttributeProto *attr = node->attribute[a];
      if (attr == NULL)
        continue;
      rc = walk_nodes(attr->g, fn, user, depth + 1);
      for (size_t k = 0; rc == 0 && k < attr->n_graphs; k++)
        rc = walk_nodes(attr->graphs[k], fn, user, depth + 1);
      if (rc != 0)
        return rc;
    }
  }
  return 0;
}

int trw__onnx_walk_nodes(const Onnx__GraphProto *graph, trw__onnx_node_fn fn,
                         void *user)
{
  if (fn == NULL)
    return TRW_EINVAL;
  return walk_nodes(graph, fn, user, 0);
}

struct tensor_walk {
  trw__onnx_tensor_fn fn;
  void *user;
};

static int graph_inits(const Onnx__GraphProto *g, struct tensor_walk *w)
{
  for (size_t i = 0; i < g->n_initializer; i++) {
    int rc;
    if (g->initializer[i] == NULL)
      continue;
    rc = w->fn(g->initializer[i], 1, w->user);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int tensor_node(const Onnx__NodeProto *node,
                       const Onnx__GraphProto *graph, int depth, void *user)
{
  struct tensor_walk *w = user;
  int rc;

  (void)depth;
  /* Each graph's initializers are visited once, with its first node; a
   * graph with no nodes is handled by the caller for the main graph and
   * has nothing to compute otherwise. */
  if (graph->n_node > 0 && graph->node[0] == node) {
    rc = graph_inits(graph, w);
    if (rc != 0)
      return rc;
  }
  if (node->op_type == NULL || strcmp(node->op_type, "Constant") != 0)
    return 0;
  if (!trw__onnx_domain_standard(node->domain))
    return 0;
  for (size_t a = 0; a < node->n_attribute; a++) {
    const Onnx__AttributeProto *attr = node->attribute[a];
    if (attr != NULL && attr->t != NULL && attr->name != NULL &&
        strcmp(attr->name, "value") == 0)
      return w->fn(attr->t, 0, w->user);
  }
  return 0;
}

int trw__onnx_walk_tensors(const Onnx__GraphProto *graph,
                           trw__onnx_tensor_fn fn, void *user)
{
  struct tensor_walk w = {fn, user};

  if (fn == NULL)
    return TRW_EINVAL;
  if (graph == NULL)
    return 0;
  if (graph->n_node == 0)
    return graph_inits(graph, &w);
  return trw__onnx_walk_nodes(graph, tensor_node, &w);
}
