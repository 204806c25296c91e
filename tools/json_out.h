/*
 * json_out.h - JSON for the --json outputs of the torchrw command.
 *
 * Every builder returns a new reference the caller owns, or NULL when
 * memory runs out.  Strings from the model are not trusted to be UTF-8;
 * invalid bytes are replaced with '?'.
 */
#ifndef TRW_JSON_OUT_H
#define TRW_JSON_OUT_H

#include <jansson.h>

#include "trwonnx.h"

/* A JSON string for s (NULL is ""), made valid UTF-8. */
json_t *trw__json_str(const char *s);

/* A shape as an array of integers, names (symbolic) and nulls (unknown),
 * or JSON null when the shape itself is unknown. */
json_t *trw__json_shape(const Onnx__TensorShapeProto *shape);

/* {"name", "dtype", "shape"} for a graph input or output. */
json_t *trw__json_value(const Onnx__ValueInfoProto *vi);

/* The whole of "torchrw inspect --json". */
json_t *trw__json_inspect(const trw__onnx_model *model,
                          const trw__onnx_summary *s,
                          const trw__onnx_extref *refs, size_t nrefs);

/*
 * Sets key in obj to val, stealing val; a NULL val or a failed set clears
 * *ok.  Lets builders check every allocation once at the end.
 */
void trw__json_set(json_t *obj, const char *key, json_t *val, int *ok);

/* Appends val to arr, stealing it; failures clear *ok. */
void trw__json_append(json_t *arr, json_t *val, int *ok);

/* Prints root, indented, and a newline on stdout; returns 0 or -1. */
int trw__json_print(const json_t *root);

#endif /* TRW_JSON_OUT_H */
