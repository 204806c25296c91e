/*
 * extdata.c - lists tensors stored in external files and checks that each
 * reference points at data that exists, inside the model's directory,
 * without reading it; and that data stored in the file is as long as the
 * tensor's shape and type say.
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trwonnx.h"

struct ext_walk {
  const trw__onnx_model *model;
  trw__onnx_extref *refs;
  size_t n, cap;
  int bad;           /* index of the first bad reference, or -1 */
  int bad_is_init;
  /* The first tensor whose raw_data is not as long as its shape needs. */
  const char *raw_bad;
  int raw_is_init;
  uint64_t raw_have, raw_need;
  char *err;
  size_t errlen;
};

/* Parses a non-negative decimal number; returns 0 or -1. */
static int parse_count(const char *s, int64_t *out)
{
  int64_t v = 0;

  if (s == NULL || *s == '\0')
    return -1;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    if (__builtin_mul_overflow(v, 10, &v) ||
        __builtin_add_overflow(v, *s - '0', &v))
      return -1;
  }
  *out = v;
  return 0;
}

/* 1 when location is absolute or has a ".." component. */
static int escapes(const char *location)
{
  const char *p = location;

  if (location[0] == '/')
    return 1;
  while (*p != '\0') {
    size_t len = strcspn(p, "/");
    if (len == 2 && p[0] == '.' && p[1] == '.')
      return 1;
    p += len;
    while (*p == '/')
      p++;
  }
  return 0;
}

/* 1 when path, symbolic links followed, lies in dir (also resolved). */
static int inside(const char *dir, const char *path)
{
  char *d = realpath(dir, NULL), *p = realpath(path, NULL);
  size_t n = d ? strlen(d) : 0;
  int in = d && p && strncmp(d, p, n) == 0 && (p[n] == '/' || (n == 1 && d[0] == '/'));
  free(d);
  free(p);
  return in;
}

static void check_ref(const trw__onnx_model *model, trw__onnx_extref *r,
                      const Onnx__TensorProto *t)
{
  struct stat st;
  char *full;
  size_t need;
  uint64_t bytes;

  for (size_t i = 0; i < t->n_external_data; i++) {
    const Onnx__StringStringEntryProto *kv = t->external_data[i];
    if (kv == NULL || kv->key == NULL)
      continue;
    if (strcmp(kv->key, "location") == 0) {
      r->location = kv->value;
    } else if (strcmp(kv->key, "offset") == 0) {
      if (parse_count(kv->value, &r->offset) != 0) {
        r->problem = "its offset is not a non-negative number";
        return;
      }
    } else if (strcmp(kv->key, "length") == 0) {
      if (parse_count(kv->value, &r->length) != 0) {
        r->problem = "its length is not a non-negative number";
        return;
      }
    }
  }
  if (r->length >= 0)
    r->need = r->length;
  else if (trw__onnx_tensor_bytes(t, &bytes) == 0 && bytes <= INT64_MAX)
    r->need = (int64_t)bytes;
  if (r->location == NULL || r->location[0] == '\0') {
    r->problem = "it names no location";
    return;
  }
  if (escapes(r->location)) {
    r->problem = "its location escapes the model's directory (absolute or "
                 "with a '..' component)";
    return;
  }
  need = strlen(model->dir) + strlen(r->location) + 2;
  full = malloc(need);
  if (full == NULL) {
    r->problem = "out of memory";
    return;
  }
  snprintf(full, need, "%s/%s", model->dir, r->location);
  if (stat(full, &st) != 0) {
    r->problem = errno == ENOENT ? "its file does not exist"
                                 : "its file cannot be examined";
    free(full);
    return;
  }
  if (!inside(model->dir, full)) {
    r->problem = "its location leads out of the model's directory through a "
                 "symbolic link";
    free(full);
    return;
  }
  free(full);
  if (!S_ISREG(st.st_mode)) {
    r->problem = "its location is not a regular file";
    return;
  }
  r->file_bytes = (int64_t)st.st_size;
  if (r->offset > r->file_bytes) {
    r->problem = "its offset is past the end of the file";
    return;
  }
  if (r->need >= 0 && r->need > r->file_bytes - r->offset)
    r->problem = "its data runs past the end of the file";
}

static int visit(const Onnx__TensorProto *t, int is_init, void *user)
{
  struct ext_walk *w = user;
  trw__onnx_extref *r;

  if (!t->has_data_location ||
      t->data_location != ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    uint64_t need;
    if (t->has_raw_data && !w->raw_bad &&
        trw__onnx_dtype_size(t->has_data_type ? t->data_type : 0) != 0 &&
        trw__onnx_tensor_bytes(t, &need) == 0 && t->raw_data.len != need) {
      w->raw_bad = t->name != NULL ? t->name : "";
      w->raw_is_init = is_init;
      w->raw_have = t->raw_data.len;
      w->raw_need = need;
    }
    return 0;
  }
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 16;
    trw__onnx_extref *grown = realloc(w->refs, cap * sizeof(*grown));
    if (grown == NULL)
      return TRW_ENOMEM;
    w->refs = grown;
    w->cap = cap;
  }
  r = &w->refs[w->n];
  memset(r, 0, sizeof(*r));
  r->tensor = t->name != NULL ? t->name : "";
  r->length = -1;
  r->need = -1;
  r->file_bytes = -1;
  check_ref(w->model, r, t);
  if (r->problem != NULL && w->bad < 0) {
    w->bad = (int)w->n;
    w->bad_is_init = is_init;
  }
  w->n++;
  return 0;
}

static void describe(const struct ext_walk *w)
{
  const trw__onnx_extref *r = &w->refs[w->bad];
  const char *what = w->bad_is_init ? "initializer" : "constant";

  if (w->err == NULL || w->errlen == 0)
    return;
  if (r->location == NULL || r->location[0] == '\0' ||
      strcmp(r->problem, "out of memory") == 0 ||
      strstr(r->problem, "number") != NULL)
    snprintf(w->err, w->errlen, "%s '%s': external data reference: %s",
             what, r->tensor, r->problem);
  else if (r->file_bytes >= 0)
    snprintf(w->err, w->errlen,
             "%s '%s': external data '%s' (%lld bytes) at offset %lld, "
             "length %lld: %s",
             what, r->tensor, r->location, (long long)r->file_bytes,
             (long long)r->offset, (long long)r->need, r->problem);
  else
    snprintf(w->err, w->errlen, "%s '%s': external data '%s': %s", what,
             r->tensor, r->location, r->problem);
}

int trw__onnx_extdata(const trw__onnx_model *model, trw__onnx_extref **refs,
                      size_t *n, char *err, size_t errlen)
{
  struct ext_walk w;
  int rc;

  if (model == NULL || model->proto == NULL || refs == NULL || n == NULL)
    return TRW_EINVAL;
  memset(&w, 0, sizeof(w));
  w.model = model;
  w.bad = -1;
  w.err = err;
  w.errlen = errlen;
  rc = trw__onnx_walk_tensors(model->proto->graph, visit, &w);
  if (rc != 0) {
    free(w.refs);
    *refs = NULL;
    *n = 0;
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "%s", rc == TRW_ENOMEM
                                      ? "out of memory"
                                      : "subgraphs nest too deeply");
    return rc;
  }
  *refs = w.refs;
  *n = w.n;
  if (w.bad >= 0) {
    describe(&w);
    return TRW_ENOTFOUND;
  }
  if (w.raw_bad) {
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "%s '%s': raw_data holds %llu bytes; its shape and type need %llu",
               w.raw_is_init ? "initializer" : "constant", w.raw_bad,
               (unsigned long long)w.raw_have, (unsigned long long)w.raw_need);
    return TRW_ERANGE;
  }
  return 0;
}
