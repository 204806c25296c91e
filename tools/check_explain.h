/*
 * check_explain.h - what `torchrw check` adds to each violation: the line
 * of the user's Python that made the node, and the rewriters that say
 * they remove it (TRW_FIXES, next to their registrations).
 */
#ifndef TRW_CHECK_EXPLAIN_H
#define TRW_CHECK_EXPLAIN_H

#include <jansson.h>

#include "trwonnx.h"

/* Where a node came from.  known is 0 when the file records no line of
 * user code for it; note then says why (and, when the file records only
 * frames inside torch, the innermost of those); note is "" for what is
 * not a node (a graph input, the model). */
typedef struct trw__where {
  int known;
  char file[512];
  long line;
  char function[128];
  char code[256];    /* the source line, stripped, or "" */
  char origin[48];   /* "pkg.torch.onnx.stack_trace" or "doc_string" */
  char note[512];
} trw__where;

/*
 * Fills *out with the user's line that made node, from what the exporter
 * wrote into the file: torch.export's node metadata
 * (pkg.torch.onnx.stack_trace, outermost frame first) or the TorchScript
 * exporter's doc string ("file.py(12): forward" lines, innermost first,
 * written with verbose=True or TORCHRW_SOURCE_LINES).  The user's line is
 * the innermost frame outside torch, onnxscript and torchrw.  Never fails.
 */
void trw__node_where(const Onnx__NodeProto *node, trw__where *out);

/*
 * The node check reported as name: a node's name, or check's stand-in
 * "(unnamed Op #N)" (the N-th node of the walk).  NULL when none is (a
 * graph input, "(model)").
 */
const Onnx__NodeProto *trw__find_reported_node(const trw__onnx_model *model,
                                               const char *name);

/*
 * Adds to each violation of list (objects with "node", "op", "rule") its
 * "where" (an object with file, line, function, code and origin, or null)
 * and "where_note" (why it is null, or null when the violation is not a
 * node's), and, when listing is not NULL (the
 * document of `torchrw list --json --backend B`), "fixed_by": the stable
 * names and sites of the rewriters for B whose TRW_FIXES match, [] for
 * none.  When listing is NULL and unknown is not, "fixed_by" is null and
 * "fixed_by_note" is unknown (why the registry could not be asked).
 * Returns 0, or -1 when memory ran out.
 */
int trw__explain_violations(const trw__onnx_model *model, const char *backend,
                            const json_t *listing, const char *unknown, json_t *list);

/*
 * The registry as `torchrw list --json --backend B` prints it, read from
 * a Python process (the rewriters of TORCHRW_PLUGINS and TORCHRW_PYTHON
 * included), selecting for an export at opset (0: the config's, else 14)
 * by exporter ("torchscript", "torch.export"; NULL: the environment's).
 * Returns a new reference, or NULL with err saying why.
 */
json_t *trw__registry_listing(const char *backend, int opset, const char *exporter, char *err,
                              size_t errlen);

/* The opset a file imports for the default domain (0 when none), and the
 * exporter that wrote it: "torch.export" when a node carries torch.export's
 * metadata (pkg.torch.onnx.*), else "torchscript".  So that the rewriters
 * named as fixers are those that would have run for this file. */
void trw__model_export_facts(const trw__onnx_model *model, int *opset, const char **exporter);

#endif /* TRW_CHECK_EXPLAIN_H */
