/*
 * check_explain.c - joins `torchrw check`'s violations to the user's
 * Python line that made each node, and to the rewriters that remove it.
 *
 * The line is what the exporter wrote into the file:
 *   - torch.export (torch.onnx.export(..., dynamo=True)) writes each
 *     node's FX stack trace into the node's metadata_props under
 *     "pkg.torch.onnx.stack_trace" (torch/onnx/_internal/exporter/
 *     _core.py), as Python's traceback prints it, outermost frame first:
 *         File "/path/export.py", line 14, in forward\n    v, i = h.topk(k)
 *     ONNX's C version converter, which torch uses below opset 18 when
 *     torchrw does not convert, drops the metadata.
 *   - the TorchScript exporter keeps each node's source range in the
 *     node's doc_string unless it strips doc strings (it does unless
 *     verbose=True; TORCHRW_SOURCE_LINES=1 keeps them under torchrw),
 *     innermost frame first:
 *         /path/export.py(14): forward
 * The rewriters come from the registry (`torchrw list --json`): each
 * rewriter lists what its TRW_FIXES declarations say it removes.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends.h"
#include "check_explain.h"
#include "json_out.h"

#define MAX_FRAMES 64

typedef struct {
  char file[512];
  long line;
  char function[128];
  char code[256];
} frame;

/* ------------------------------------------------------------------------ */
/* Metadata                                                                  */

/* Reads a varint; 0, or -1 past the end. */
static int varint(const uint8_t *b, size_t len, size_t *pos, uint64_t *v)
{
  *v = 0;
  for (unsigned shift = 0; *pos < len && shift < 64; shift += 7) {
    uint8_t c = b[(*pos)++];
    *v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80))
      return 0;
  }
  return -1;
}

/* In a serialized StringStringEntryProto, whether the key is key; then
 * *value and *vlen are its value (borrowed from b). */
static int entry_is(const uint8_t *b, size_t len, const char *key, const char **value,
                    size_t *vlen)
{
  size_t pos = 0, klen = strlen(key);
  int match = 0;
  *value = NULL;
  *vlen = 0;
  while (pos < len) {
    uint64_t tag, n;
    if (varint(b, len, &pos, &tag) != 0 || (tag & 7) != 2 || varint(b, len, &pos, &n) != 0 ||
        n > len - pos)
      return 0;
    if (tag >> 3 == 1)
      match = n == klen && memcmp(b + pos, key, klen) == 0;
    else if (tag >> 3 == 2) {
      *value = (const char *)b + pos;
      *vlen = (size_t)n;
    }
    pos += (size_t)n;
  }
  return match && *value != NULL;
}

/* The node's metadata value for key (copied into buf), or NULL.  NodeProto
 * has metadata_props (field 9) from onnx 1.16; a reader generated from an
 * older onnx.proto keeps the field among the unknown ones. */
static const char *node_metadata(const Onnx__NodeProto *node, const char *key, char *buf,
                                 size_t buflen)
{
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field_by_name(node->base.descriptor, "metadata_props");
  if (f != NULL) {
    size_t n = *(const size_t *)((const char *)node + f->quantifier_offset);
    Onnx__StringStringEntryProto *const *e =
        *(Onnx__StringStringEntryProto *const *const *)((const char *)node + f->offset);
    for (size_t i = 0; i < n; i++)
      if (e[i] && e[i]->key && e[i]->value && strcmp(e[i]->key, key) == 0) {
        snprintf(buf, buflen, "%s", e[i]->value);
        return buf;
      }
    return NULL;
  }
  for (unsigned i = 0; i < node->base.n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &node->base.unknown_fields[i];
    const char *v;
    size_t vlen;
    if (u->tag == 9 && u->wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED &&
        entry_is(u->data, u->len, key, &v, &vlen)) {
      snprintf(buf, buflen, "%.*s", (int)(vlen < buflen ? vlen : buflen - 1), v);
      return buf;
    }
  }
  return NULL;
}

void trw__model_export_facts(const trw__onnx_model *model, int *opset, const char **exporter)
{
  const Onnx__GraphProto *g = model->proto->graph;
  char buf[8];
  int64_t v = trw__onnx_opset(model->proto, "ai.onnx");
  *opset = v > 0 && v < 1000 ? (int)v : 0;
  *exporter = "torchscript";
  for (size_t i = 0; g && i < g->n_node; i++)
    if (node_metadata(g->node[i], "pkg.torch.onnx.fx_node", buf, sizeof buf) ||
        node_metadata(g->node[i], "pkg.torch.onnx.stack_trace", buf, sizeof buf)) {
      *exporter = "torch.export";
      return;
    }
}

/* ------------------------------------------------------------------------ */
/* Stack traces                                                              */

/* Whether a frame is torch's, its exporters' or torchrw's own. */
static int library_frame(const char *file)
{
  static const char *const parts[] = {"/torch/", "/onnxscript/", "/onnx_ir/", "/torchrw/"};
  if (file[0] == '<' || strncmp(file, "torch/", 6) == 0)
    return 1;
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    if (strstr(file, parts[i]))
      return 1;
  return 0;
}

/* Copies the n bytes at s into a buffer of size cap, stripped. */
static void copy_stripped(char *dst, size_t cap, const char *s, size_t n)
{
  while (n > 0 && (*s == ' ' || *s == '\t'))
    s++, n--;
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
    n--;
  snprintf(dst, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
}

/* torch.export's stack trace: 'File "F", line N, in FN' lines, each
 * followed by its code, outermost first.  Frames are stored innermost
 * first. */
static size_t parse_stack_trace(const char *text, frame *out, size_t max)
{
  frame tmp[MAX_FRAMES];
  size_t n = 0;
  for (const char *p = text; p && *p;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    const char *q = p;
    while (q < p + len && *q == ' ')
      q++;
    if (strncmp(q, "File \"", 6) == 0 && n < MAX_FRAMES) {
      const char *name = q + 6, *endq = memchr(name, '"', (size_t)(p + len - name));
      const char *ln = endq ? strstr(endq, ", line ") : NULL;
      if (endq && ln && ln < p + len) {
        frame *f = &tmp[n++];
        memset(f, 0, sizeof *f);
        snprintf(f->file, sizeof f->file, "%.*s", (int)(endq - name), name);
        f->line = strtol(ln + 7, NULL, 10);
        const char *in = strstr(ln, ", in ");
        if (in && in < p + len)
          copy_stripped(f->function, sizeof f->function, in + 5, (size_t)(p + len - in - 5));
      }
    } else if (n > 0 && tmp[n - 1].code[0] == '\0') {
      copy_stripped(tmp[n - 1].code, sizeof tmp[n - 1].code, p, len);
    }
    p = eol ? eol + 1 : NULL;
  }
  for (size_t i = 0; i < n && i < max; i++)
    out[i] = tmp[n - 1 - i];
  return n < max ? n : max;
}

/* The TorchScript exporter's doc string: "F(N): FN" lines, innermost
 * first. */
static size_t parse_doc_string(const char *text, frame *out, size_t max)
{
  size_t n = 0;
  for (const char *p = text; p && *p && n < max;) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    const char *colon = NULL;
    for (const char *q = p + len; q > p; q--)
      if (q[-1] == ')' && q < p + len && *q == ':') {
        colon = q;
        break;
      }
    const char *open = NULL;
    for (const char *q = colon ? colon - 1 : p; colon && q > p; q--)
      if (q[-1] == '(') {
        open = q - 1;
        break;
      }
    if (colon && open && open > p) {
      frame *f = &out[n++];
      memset(f, 0, sizeof *f);
      snprintf(f->file, sizeof f->file, "%.*s", (int)(open - p), p);
      f->line = strtol(open + 1, NULL, 10);
      copy_stripped(f->function, sizeof f->function, colon + 1,
                    (size_t)(p + len - colon - 1));
    }
    p = eol ? eol + 1 : NULL;
  }
  return n;
}

/* The source line of a frame, read from the file when it is readable. */
static void read_code(frame *f)
{
  FILE *fp;
  char buf[1024];
  long at = 0;
  if (f->code[0] || f->line <= 0 || !(fp = fopen(f->file, "r")))
    return;
  while (fgets(buf, sizeof buf, fp))
    if (++at == f->line) {
      copy_stripped(f->code, sizeof f->code, buf, strcspn(buf, "\n"));
      break;
    }
  fclose(fp);
}

/* A path under the working directory, shown relative to it. */
static const char *shown_path(const char *file)
{
  static char cwd[PATH_MAX];
  size_t n;
  if (!cwd[0] && !getcwd(cwd, sizeof cwd))
    return file;
  n = strlen(cwd);
  if (n > 1 && strncmp(file, cwd, n) == 0 && file[n] == '/')
    return file + n + 1;
  return file;
}

void trw__node_where(const Onnx__NodeProto *node, trw__where *out)
{
  static char text[16384];
  frame frames[MAX_FRAMES];
  size_t n = 0;

  memset(out, 0, sizeof *out);
  if (node == NULL)
    return; /* A graph input or the model: no line to look for. */
  if (node_metadata(node, "pkg.torch.onnx.stack_trace", text, sizeof text)) {
    n = parse_stack_trace(text, frames, MAX_FRAMES);
    snprintf(out->origin, sizeof out->origin, "pkg.torch.onnx.stack_trace");
  } else if (node->doc_string && node->doc_string[0]) {
    n = parse_doc_string(node->doc_string, frames, MAX_FRAMES);
    snprintf(out->origin, sizeof out->origin, "doc_string");
  }
  for (size_t i = 0; i < n; i++) {
    if (library_frame(frames[i].file))
      continue;
    read_code(&frames[i]);
    out->known = 1;
    snprintf(out->file, sizeof out->file, "%.511s", shown_path(frames[i].file));
    out->line = frames[i].line;
    snprintf(out->function, sizeof out->function, "%s", frames[i].function);
    snprintf(out->code, sizeof out->code, "%s", frames[i].code);
    return;
  }
  if (n > 0)
    snprintf(out->note, sizeof out->note,
             "no line of user code recorded (only torch's: %.300s:%ld)", frames[0].file,
             frames[0].line);
  else
    snprintf(out->note, sizeof out->note,
             "no line recorded in the file (torch.export writes them at opset 18 and up, "
             "or under torchrw at any opset; the TorchScript exporter with verbose=True "
             "or TORCHRW_SOURCE_LINES=1)");
}

/* ------------------------------------------------------------------------ */
/* Finding the reported node                                                 */

struct find {
  const char *name;
  size_t want_index; /* for "(unnamed Op #N)", else 0 */
  size_t index;
  const Onnx__NodeProto *found;
};

static int find_node(const Onnx__NodeProto *node, const Onnx__GraphProto *graph, int depth,
                     void *user)
{
  struct find *f = user;
  (void)graph, (void)depth;
  f->index++;
  if (f->want_index ? f->index == f->want_index
                    : node->name != NULL && strcmp(node->name, f->name) == 0) {
    f->found = node;
    return 1;
  }
  return 0;
}

const Onnx__NodeProto *trw__find_reported_node(const trw__onnx_model *model, const char *name)
{
  struct find f = {name, 0, 0, NULL};
  const char *hash;
  if (model == NULL || model->proto == NULL || name == NULL)
    return NULL;
  if (strncmp(name, "(unnamed ", 9) == 0 && (hash = strrchr(name, '#')) != NULL)
    f.want_index = (size_t)strtoull(hash + 1, NULL, 10);
  trw__onnx_walk_nodes(model->proto->graph, find_node, &f);
  return f.found;
}

/* ------------------------------------------------------------------------ */
/* Rewriters                                                                 */

/* Whether rewriter r (an entry of the listing made for backend, whose
 * engine version is version) serves it: the listing marks what the
 * registry selects for the backend and its version ("tensorrt:8.5"
 * selects a "tensorrt:<8.6" rewriter, not a "tensorrt:>=10"); a disabled
 * rewriter of the backend whose versions hold is named too, so the user
 * learns that switching it back on removes the violation. */
static int serves(const json_t *r, const char *backend, const char *version)
{
  const char *b = json_string_value(json_object_get(r, "backend"));
  const char *versions = json_string_value(json_object_get(r, "backend_version"));
  size_t n = strcspn(backend, ":");
  if (json_is_true(json_object_get(r, "selected")))
    return 1;
  return b != NULL && json_is_true(json_object_get(r, "disabled")) && strlen(b) == n &&
         strncmp(b, backend, n) == 0 && (!versions || trw__version_matches(versions, version));
}

static json_t *fixed_by(const json_t *listing, const char *backend, const char *op,
                        const char *rule)
{
  json_t *out = json_array(), *r, *fx;
  size_t i, k;
  if (out == NULL)
    return NULL;
  const char *version = json_string_value(json_object_get(listing, "backend_version"));
  json_array_foreach(json_object_get(listing, "rewriters"), i, r) {
    if (!serves(r, backend, version))
      continue;
    json_array_foreach(json_object_get(r, "fixes"), k, fx) {
      const char *fop = json_string_value(json_object_get(fx, "op"));
      const char *frule = json_string_value(json_object_get(fx, "rule"));
      if (fop == NULL || frule == NULL || strcmp(fop, op) != 0 ||
          strncmp(rule, frule, strlen(frule)) != 0)
        continue;
      json_array_append_new(
          out, json_pack("{s:O, s:O, s:O, s:O}", "stable", json_object_get(r, "stable"), "file",
                         json_object_get(r, "file"), "line", json_object_get(r, "line"),
                         "disabled", json_object_get(r, "disabled")));
      break;
    }
  }
  return out;
}

int trw__explain_violations(const trw__onnx_model *model, const char *backend,
                            const json_t *listing, const char *unknown, json_t *list)
{
  size_t i;
  json_t *v;
  int ok = 1;
  json_array_foreach(list, i, v) {
    const char *node = json_string_value(json_object_get(v, "node"));
    const char *op = json_string_value(json_object_get(v, "op"));
    const char *rule = json_string_value(json_object_get(v, "rule"));
    trw__where w;
    trw__node_where(trw__find_reported_node(model, node), &w);
    if (w.known)
      trw__json_set(v, "where",
                    json_pack("{s:o, s:I, s:o, s:o, s:s}", "file", trw__json_str(w.file), "line",
                              (json_int_t)w.line, "function", trw__json_str(w.function),
                              "code", trw__json_str(w.code), "origin", w.origin),
                    &ok);
    else
      trw__json_set(v, "where", json_null(), &ok);
    trw__json_set(v, "where_note", w.note[0] ? trw__json_str(w.note) : json_null(), &ok);
    if (listing != NULL && op != NULL && rule != NULL)
      trw__json_set(v, "fixed_by", fixed_by(listing, backend, op, rule), &ok);
    else if (listing == NULL && unknown != NULL) {
      trw__json_set(v, "fixed_by", json_null(), &ok);
      trw__json_set(v, "fixed_by_note", trw__json_str(unknown), &ok);
    }
  }
  return ok ? 0 : -1;
}
