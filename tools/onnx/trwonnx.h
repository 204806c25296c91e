/*
 * trwonnx.h - a thin reader for .onnx files, for the torchrw command and
 * tests.
 *
 * The protobuf code is generated at build time by protoc-c from the
 * onnx.proto that python3-onnx installs; this header adds loading with
 * clear errors, a check of external data that never reads the weights,
 * graph walks and a summary of a model.
 *
 * Conventions
 *   - Functions that can fail return 0 or a negative TRW_E* code (see
 *     include/torchrw.h) and, when err is not NULL, write one sentence
 *     into err saying what is wrong.  They never exit or abort.
 *   - Strings inside results borrow from the model's protobuf unless the
 *     documentation says otherwise; they live as long as the model.
 */
#ifndef TRWONNX_H
#define TRWONNX_H

#include <stddef.h>
#include <stdint.h>

#include "onnx.pb-c.h"
#include "torchrw.h"

/* Nested messages deeper than this are refused before unpacking, so a
 * hostile file cannot exhaust the stack of the recursive unpacker or of
 * the graph walks. */
#define TRW__ONNX_MAX_DEPTH 64

/* Subgraphs (If, Loop, Scan bodies) nested deeper than this are refused by
 * the graph walks. */
#define TRW__ONNX_MAX_GRAPH_DEPTH 16

/* A loaded model. */
typedef struct trw__onnx_model {
  char *path;               /* the path it was loaded from (owned) */
  char *dir;                /* its directory, for external data (owned) */
  Onnx__ModelProto *proto;  /* the unpacked model (owned) */
  uint64_t file_bytes;      /* size of the .onnx file */
} trw__onnx_model;

/*
 * Loads the .onnx file at path.  On success *out is a model the caller
 * frees with trw__onnx_free().  External data is not read and not checked
 * here; see trw__onnx_extdata().
 *
 * Returns 0, or
 *   TRW_EINVAL    path or out is NULL;
 *   TRW_ENOTFOUND the file does not exist;
 *   TRW_EIO       it cannot be opened or read, or is a directory;
 *   TRW_ETYPE     it is empty, is not an ONNX model, is truncated or
 *                 corrupted, or nests messages too deeply (err says which);
 *   TRW_ENOMEM.
 */
int trw__onnx_load(const char *path, trw__onnx_model **out, char *err,
                   size_t errlen);

/*
 * Unpacks an in-memory .onnx image; path only names the model in messages
 * and locates external data (it need not exist).  Same results as
 * trw__onnx_load() except the file errors.
 */
int trw__onnx_load_buffer(const uint8_t *buf, size_t len, const char *path,
                          trw__onnx_model **out, char *err, size_t errlen);

/* Frees a model from trw__onnx_load(); NULL is allowed. */
void trw__onnx_free(trw__onnx_model *model);

/*
 * Checks the nesting depth of a serialized message of type desc without
 * unpacking it.  Returns 0 when no message is nested deeper than maxdepth
 * (malformed input also returns 0: the unpacker reports it), TRW_ERANGE
 * when one is.
 */
int trw__pb_depth_ok(const ProtobufCMessageDescriptor *desc,
                     const uint8_t *buf, size_t len, int maxdepth);

/* ------------------------------------------------------------------------ */
/* Graph walks                                                               */

/* Called for each node; depth is 0 in the main graph.  A nonzero return
 * stops the walk and becomes its result. */
typedef int (*trw__onnx_node_fn)(const Onnx__NodeProto *node,
                                 const Onnx__GraphProto *graph, int depth,
                                 void *user);

/*
 * Calls fn for every node of graph and, depth first, of the subgraphs in
 * its nodes' attributes.  Returns 0, fn's first nonzero result, or
 * TRW_ERANGE when subgraphs nest deeper than TRW__ONNX_MAX_GRAPH_DEPTH.
 * graph may be NULL (nothing to walk).
 */
int trw__onnx_walk_nodes(const Onnx__GraphProto *graph, trw__onnx_node_fn fn,
                         void *user);

/* Called for each stored tensor: an initializer (is_init 1) or the value
 * of a Constant node (is_init 0). */
typedef int (*trw__onnx_tensor_fn)(const Onnx__TensorProto *tensor,
                                   int is_init, void *user);

/*
 * Calls fn for every initializer of graph and its subgraphs and for the
 * "value" tensor of every Constant node.  Results as trw__onnx_walk_nodes().
 */
int trw__onnx_walk_tensors(const Onnx__GraphProto *graph,
                           trw__onnx_tensor_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* Types and shapes                                                          */

/* The lower-case name of a TensorProto data type ("float", "int64", ...),
 * or "?" for an unknown or undefined one.  Never NULL. */
const char *trw__onnx_dtype_name(int32_t dtype);

/* The data type whose name is name, or -1. */
int32_t trw__onnx_dtype_from_name(const char *name);

/* Bytes per element of dtype, or 0 when it has no fixed size (string,
 * unknown). */
size_t trw__onnx_dtype_size(int32_t dtype);

/*
 * The number of bytes a tensor's data occupies: element count times element
 * size, or the raw_data length when the element size is not fixed.  Stores
 * the result in *bytes and returns 0, or returns TRW_ERANGE when the
 * dimensions are negative or the product overflows.
 */
int trw__onnx_tensor_bytes(const Onnx__TensorProto *t, uint64_t *bytes);

/* The element type of a value's tensor type, or 0 when it has none. */
int32_t trw__onnx_vi_dtype(const Onnx__ValueInfoProto *vi);

/* The shape of a value's tensor type, or NULL when unknown. */
const Onnx__TensorShapeProto *trw__onnx_vi_shape(const Onnx__ValueInfoProto *vi);

/* 1 when every dimension of shape has a value, 0 otherwise (also when
 * shape is NULL). */
int trw__onnx_shape_static(const Onnx__TensorShapeProto *shape);

/*
 * Writes shape as "[N,3,224,224]" (symbolic dimensions by name, unknown
 * ones as ?) or "?" when shape is NULL, truncating to buflen.  Returns buf.
 */
char *trw__onnx_shape_str(const Onnx__TensorShapeProto *shape, char *buf,
                          size_t buflen);

/* 1 when domain is one of the standard ONNX domains ("", "ai.onnx",
 * "ai.onnx.ml"), else 0. */
int trw__onnx_domain_standard(const char *domain);

/* The display spelling of a node domain: "ai.onnx" for "" or NULL. */
const char *trw__onnx_domain_name(const char *domain);

/* The opset version model imports for domain ("" and "ai.onnx" are the
 * same), or -1 when it imports none. */
int64_t trw__onnx_opset(const Onnx__ModelProto *model, const char *domain);

/* ------------------------------------------------------------------------ */
/* External data                                                             */

/* One tensor whose data lives in another file. */
typedef struct trw__onnx_extref {
  const char *tensor;   /* tensor name (borrowed; "" when unnamed) */
  const char *location; /* file, relative to the model (borrowed; NULL when
                           the tensor names none) */
  int64_t offset;       /* 0 when not given */
  int64_t length;       /* -1 when not given */
  int64_t need;         /* bytes the tensor needs: length, else its size
                           from dims and dtype, else -1 */
  int64_t file_bytes;   /* size of the file, -1 when it cannot be stat'ed */
  const char *problem;  /* NULL when the reference is sound, else a static
                           phrase saying what is wrong */
} trw__onnx_extref;

/*
 * Lists the tensors of model whose data_location is EXTERNAL, and checks
 * each one's file relative to the model's directory without reading it:
 * the location must be given, relative, stay inside the directory (no ".."
 * component), name a regular file, and offset + length (or the tensor's
 * size) must not run past the file's end.
 *
 * On success *refs is an array of *n entries that the caller frees with
 * free(); it is NULL when n is 0.  Returns 0 when every reference is sound,
 * TRW_ENOTFOUND when one points nowhere or leads out of the model's
 * directory through a symbolic link (the list is still returned and err
 * names the first bad tensor and what is wrong), TRW_ERANGE when a tensor
 * stored in the file has raw_data of another length than its shape and
 * type need (err names it), TRW_EINVAL or TRW_ENOMEM.
 */
int trw__onnx_extdata(const trw__onnx_model *model, trw__onnx_extref **refs,
                      size_t *n, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Summary                                                                   */

/* How many nodes of one (domain, op_type) a model has. */
typedef struct trw__onnx_opcount {
  const char *domain;  /* display spelling: "ai.onnx" for the default */
  const char *op_type; /* borrowed */
  size_t count;
} trw__onnx_opcount;

/* What a model holds, for inspect and diff. */
typedef struct trw__onnx_summary {
  trw__onnx_opcount *ops;   /* sorted by domain, then op type (owned) */
  size_t nops;
  size_t nodes;             /* all nodes, subgraphs included */
  size_t subgraph_nodes;    /* of which inside subgraphs */
  size_t inits;             /* initializers stored in the file */
  uint64_t init_bytes;
  size_t ext_inits;         /* tensors stored in external files */
  uint64_t ext_bytes;       /* their sizes from the references */
  size_t constants;         /* Constant nodes with a tensor value */
  uint64_t constant_bytes;
  const char **custom_domains; /* non-standard domains used by nodes or
                                  imported, sorted, borrowed (array owned) */
  size_t ncustom;
  const Onnx__ValueInfoProto **inputs; /* graph inputs that are not
                                          initializers (array owned) */
  size_t ninputs;
} trw__onnx_summary;

/*
 * Summarises model into *s (which the caller owns and clears with
 * trw__onnx_summary_free()).  External tensors are counted from their
 * references; their files are not read.  Returns 0, TRW_ERANGE when
 * subgraphs nest too deeply, or TRW_ENOMEM.
 */
int trw__onnx_summarize(const trw__onnx_model *model, trw__onnx_summary *s);

/* Frees what trw__onnx_summarize() allocated; s itself is not freed. */
void trw__onnx_summary_free(trw__onnx_summary *s);

#endif /* TRWONNX_H */
