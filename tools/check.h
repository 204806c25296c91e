/*
 * check.h - compares a model with a backend's capability table
 * (data/backends/<backend>.json).
 *
 * A table names, per domain, the operators a backend supports and the
 * constraints it puts on them; every entry cites where the fact comes
 * from.  The rules are generic and data-driven:
 *   - an operator the table does not list, or lists as unsupported;
 *   - an operator supported only within an opset range ("since", "until");
 *   - attribute values ("allowed", "forbidden", "min", "max", "default"),
 *     and attributes the operator does not have at the opset ("absent");
 *   - inputs that must be constants (an initializer or a Constant node's
 *     output), bounded ("constant", "max"), and of at most so many
 *     elements ("max_elements": a Reshape shape's length is its rank), or
 *     constants of at least so many ("min_elements": values computed at
 *     run time are not judged), of at most so many dims ("max_rank": a
 *     constant's, or the declared one); "variadic" applies a rule to its
 *     index and every later input;
 *   - what the converter computes itself (graph.folding: "shape_of",
 *     "before_conversion"): a value computed from constants and input
 *     shapes meets "constant", and a folding converter never sees the
 *     nodes that compute it;
 *   - input dtypes that are refused, always or only when shapes are
 *     dynamic ("dtypes": [{"forbidden": [...], "when": "dynamic"}]);
 *   - graph rules: static input shapes, opset range per domain;
 *   - domains other than those the table lists.
 * data/backends/README.md describes the format.
 */
#ifndef TRW_CHECK_H
#define TRW_CHECK_H

#include <stdio.h>

#include <jansson.h>

#include "trwonnx.h"

/* Called once per violation, in graph order.  node is the node's name (or
 * a stand-in such as "(unnamed TopK #3)"), what the operator type or
 * "graph input" / "opset", rule a sentence, source where the fact comes
 * from.  A nonzero return stops the check. */
typedef int (*trw__violation_fn)(const char *node, const char *what,
                                 const char *rule, const char *source,
                                 void *user);

/* The data directory (the capability tables, engines.py): $TORCHRW_DATA
 * when set, else <exe>/../share/torchrw when it has backends/, else the
 * build's source data/.  May return buf. */
const char *trw__data_dir(char *buf, size_t buflen);

/*
 * Loads the capability table of backend, a spec ("tensorrt", "tensorrt:8.5":
 * a bare name is the newest table), from the data directory ($TORCHRW_DATA,
 * else share/torchrw beside the executable, else the compile-time default).
 * Returns the table (the caller decrefs it) or NULL with err saying why: an
 * unknown backend (err lists the known ones), a malformed spec or a version
 * with no table (err lists the known versions), a name that is not a plain
 * word, a file that is not valid JSON, or a table whose "version" disagrees
 * with its name.
 */
json_t *trw__check_load_table(const char *backend, char *err, size_t errlen);

/* Prints every capability table torchrw knows (backends.c's versions):
 * its spec ("tensorrt:8.5"), title and file, as text or a JSON array.
 * Returns 0, 1 when a table is missing or disagrees with its name (the
 * line says why), or -1 when out of memory. */
int trw__check_list_tables(FILE *out, int as_json);

/*
 * Checks model against table, calling fn for each violation.  Returns the
 * number of violations, or a negative code: TRW_ECONFIG when the table is
 * malformed (err says where), TRW_ERANGE when subgraphs nest too deeply,
 * TRW_ENOMEM.
 */
int trw__check_model(const trw__onnx_model *model, const json_t *table,
                     trw__violation_fn fn, void *user, char *err,
                     size_t errlen);

#endif /* TRW_CHECK_H */
