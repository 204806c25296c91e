/*
 * cmd_inspect.c - "torchrw inspect MODEL.onnx [--json]": what an exported
 * file holds, without reading external weights.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cmd.h"
#include "json_out.h"

static void help(void)
{
  printf("usage: torchrw inspect MODEL.onnx [--json]\n"
         "\n"
         "Summarises an ONNX file: IR version, opset imports, producer, "
         "graph inputs\nand outputs with dtypes and shapes (symbolic "
         "dimensions by name, unknown\nones as ?), node counts by domain "
         "and operator, initializers (those in\nexternal files are counted "
         "from their references, never read), custom\ndomains and external "
         "data references.\n"
         "\n"
         "  --json   print the same as JSON\n"
         "  --help   show this help\n"
         "\n"
         "Exit status: 0 success, 2 bad usage or a file that is not a sound "
         "ONNX model\n(missing, not ONNX, truncated, corrupted, external "
         "data pointing nowhere).\n");
}

static void print_values(const char *title,
                         const Onnx__ValueInfoProto *const *vis, size_t n)
{
  char shape[256];

  printf("%s (%zu)\n", title, n);
  for (size_t i = 0; i < n; i++) {
    const Onnx__ValueInfoProto *vi = vis[i];
    if (vi == NULL)
      continue;
    printf("  %-24s %-8s %s\n", vi->name != NULL ? vi->name : "",
           trw__onnx_dtype_name(trw__onnx_vi_dtype(vi)),
           trw__onnx_shape_str(trw__onnx_vi_shape(vi), shape, sizeof(shape)));
  }
}

static void print_text(const trw__onnx_model *model,
                       const trw__onnx_summary *s,
                       const trw__onnx_extref *refs, size_t nrefs)
{
  const Onnx__ModelProto *m = model->proto;
  char b1[32], b2[32];

  printf("%s\n", model->path);
  if (m->has_ir_version)
    printf("  IR version    %lld\n", (long long)m->ir_version);
  else
    printf("  IR version    ?\n");
  printf("  opsets       ");
  for (size_t i = 0; i < m->n_opset_import; i++)
    printf(" %s %lld%s", trw__onnx_domain_name(m->opset_import[i]->domain),
           (long long)(m->opset_import[i]->has_version
                           ? m->opset_import[i]->version
                           : -1),
           i + 1 < m->n_opset_import ? "," : "");
  printf("\n  producer      %s %s\n",
         m->producer_name && m->producer_name[0] ? m->producer_name : "?",
         m->producer_version ? m->producer_version : "");
  printf("  file size     %s\n\n",
         trw__cmd_bytes(model->file_bytes, b1, sizeof(b1)));

  print_values("inputs", s->inputs, s->ninputs);
  print_values("outputs",
               (const Onnx__ValueInfoProto *const *)m->graph->output,
               m->graph->n_output);

  printf("\nnodes: %zu", s->nodes);
  if (s->subgraph_nodes > 0)
    printf(" (%zu in subgraphs)", s->subgraph_nodes);
  printf("\n");
  for (size_t i = 0; i < s->nops; i++)
    printf("  %-16s %-28s %zu\n", s->ops[i].domain, s->ops[i].op_type,
           s->ops[i].count);

  printf("\ninitializers: %zu in the file (%s), %zu external (%s)\n",
         s->inits, trw__cmd_bytes(s->init_bytes, b1, sizeof(b1)),
         s->ext_inits, trw__cmd_bytes(s->ext_bytes, b2, sizeof(b2)));
  if (s->constants > 0)
    printf("constants: %zu (%s)\n", s->constants,
           trw__cmd_bytes(s->constant_bytes, b1, sizeof(b1)));
  printf("custom domains:");
  if (s->ncustom == 0)
    printf(" none");
  for (size_t i = 0; i < s->ncustom; i++)
    printf(" %s", s->custom_domains[i]);
  printf("\nexternal data:");
  if (nrefs == 0)
    printf(" none\n");
  else
    printf(" %zu reference%s\n", nrefs, nrefs == 1 ? "" : "s");
  for (size_t i = 0; i < nrefs; i++)
    printf("  %-24s %s offset %lld length %lld\n", refs[i].tensor,
           refs[i].location, (long long)refs[i].offset,
           (long long)refs[i].need);
}

int trw__cmd_inspect(int argc, char **argv)
{
  const char *pos[1];
  int help_flag, npos, json = 0, rc;
  const trw__opt opts[] = {{"--json", 0, NULL, &json}, {NULL, 0, NULL, NULL}};
  trw__onnx_model *model;
  trw__onnx_extref *refs = NULL;
  trw__onnx_summary s;
  size_t nrefs = 0;

  rc = trw__cmd_parse("inspect", argc, argv, opts, &help_flag, pos, 1, &npos);
  if (rc != 0)
    return rc;
  if (help_flag) {
    help();
    return TRW__EXIT_OK;
  }
  if (npos != 1) {
    fprintf(stderr, "torchrw inspect: expected one MODEL.onnx (see torchrw "
                    "inspect --help)\n");
    return TRW__EXIT_BAD;
  }
  rc = trw__cmd_load(pos[0], &model, &refs, &nrefs);
  if (rc != 0)
    return rc;
  rc = trw__onnx_summarize(model, &s);
  if (rc != 0) {
    trw__cmd_error(pos[0], "%s", rc == TRW_ENOMEM ? "out of memory"
                                                  : "subgraphs nest too deeply");
    free(refs);
    trw__onnx_free(model);
    return TRW__EXIT_BAD;
  }
  rc = TRW__EXIT_OK;
  if (json) {
    json_t *root = trw__json_inspect(model, &s, refs, nrefs);
    if (root == NULL || trw__json_print(root) != 0) {
      trw__cmd_error(pos[0], "cannot write JSON (out of memory?)");
      rc = TRW__EXIT_BAD;
    }
    json_decref(root);
  } else {
    print_text(model, &s, refs, nrefs);
  }
  trw__onnx_summary_free(&s);
  free(refs);
  trw__onnx_free(model);
  return rc;
}
