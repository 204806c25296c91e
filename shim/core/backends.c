/* backends.c - the one table of backends: names, engines, versions. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "core.h"

/*
 * Every backend torchrw knows.  versions lists the engine versions of
 * the capability tables in data/backends (data/backends/README.md):
 * TensorRT's parser at 8.5, 8.6 and 10.15 (onnx-tensorrt's
 * docs/operators.md at each release), and the version each measured
 * engine was measured on.  reads_external_data is 0 for ncnn:
 * pnnx (20261020) prints "FATAL ERROR no external data", exits 0 and
 * writes garbage weights (data/backends/ncnn.json, graph.external_data;
 * tests/export/test_external_data.py keeps the two the same).  runner
 * names the engines data/engines.py runs here, on the CPU.
 */
static const trw__backend table[] = {
    {"default", "any engine", 1, NULL, {NULL}},
    {"tensorrt", "TensorRT", 1, NULL, {"8.5", "8.6", "10.15", NULL}},
    {"onnxruntime", "ONNX Runtime", 1, "onnxruntime", {"1.32.0", NULL}},
    {"ncnn", "ncnn", 0, "ncnn", {"20261020", NULL}},
    {"openvino", "OpenVINO", 1, "openvino", {"2026.4.1", NULL}},
    {"pplnn", "PPLNN", 1, NULL, {NULL}},
    {"snpe", "SNPE", 1, NULL, {NULL}},
    {"torchscript", "TorchScript", 1, NULL, {NULL}},
    {"coreml", "Core ML", 1, NULL, {NULL}},
    {"rknn", "RKNN", 1, NULL, {NULL}},
    {"ascend", "Ascend", 1, NULL, {NULL}},
    {"tvm", "TVM", 1, NULL, {NULL}},
};
#define NBACKENDS (sizeof table / sizeof table[0])

/* snprintf into err; this file is linked alone into the torchrw command
 * (tools/CMakeLists.txt), without the core's log.c. */
static void say(char *buf, size_t len, const char *fmt, ...) TRW_PRINTF(3, 4);
static void say(char *buf, size_t len, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  if (len && vsnprintf(buf, len, fmt, ap) < 0)
    buf[0] = '\0';
  va_end(ap);
}

const trw__backend *trw__backends(size_t *count)
{
  if (count)
    *count = NBACKENDS;
  return table;
}

const trw__backend *trw__backend_find(const char *name)
{
  if (!name || !*name)
    return &table[0];
  for (size_t i = 0; i < NBACKENDS; i++)
    if (strcmp(name, table[i].name) == 0)
      return &table[i];
  return NULL;
}

static const trw__backend *find_n(const char *name, size_t n)
{
  for (size_t i = 0; i < NBACKENDS; i++)
    if (strlen(table[i].name) == n && strncmp(name, table[i].name, n) == 0)
      return &table[i];
  return NULL;
}

const char *trw__backend_newest(const trw__backend *b)
{
  const char *v = NULL;
  for (size_t i = 0; b && b->versions[i]; i++)
    v = b->versions[i];
  return v;
}

const char *trw__backend_versions_text(const trw__backend *b, char *buf, size_t len)
{
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; b && b->versions[i] && used < len; i++) {
    int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", b->versions[i]);
    if (w < 0)
      break;
    used += (size_t)w;
  }
  if (!buf[0])
    say(buf, len, "none");
  return buf;
}

/* Nonzero for a dotted number of n characters: "8", "8.5", "2026.4.1". */
static int is_version(const char *s, size_t n)
{
  if (n == 0 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[n - 1]))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)s[i]) && !(s[i] == '.' && s[i + 1] != '.'))
      return 0;
  return 1;
}

int trw__backend_parse(const char *spec, const trw__backend **out, const char **version,
                       char *err, size_t errlen)
{
  char known[256];
  const char *colon = spec ? strchr(spec, ':') : NULL;
  size_t n = colon ? (size_t)(colon - spec) : spec ? strlen(spec) : 0;
  const trw__backend *b = n == 0 && !colon ? &table[0] : find_n(spec, n);
  if (!b) {
    say(err, errlen, "backend '%s' is not a known backend (known: %s)", spec,
             trw_known_backends());
    return TRW_EBACKEND;
  }
  trw__backend_versions_text(b, known, sizeof known);
  if (!colon) {
    *out = b;
    *version = trw__backend_newest(b);
    return 0;
  }
  const char *v = colon + 1;
  if (!b->versions[0]) {
    say(err, errlen, "backend '%s': torchrw knows no versions of %s (write '%s')", spec,
             b->name, b->name);
    return TRW_EBACKEND;
  }
  if (!is_version(v, strlen(v))) {
    say(err, errlen,
             "backend '%s': %s is not a version (write %s:VERSION, a dotted number; "
             "known versions of %s: %s)",
             spec, *v ? v : "the empty string", b->name, b->name, known);
    return TRW_EBACKEND;
  }
  for (size_t i = 0; b->versions[i]; i++)
    if (strcmp(v, b->versions[i]) == 0) {
      *out = b;
      *version = b->versions[i];
      return 0;
    }
  say(err, errlen,
           "backend '%s': torchrw has no table of %s %s (known versions of %s: %s; "
           "'%s' alone means %s)",
           spec, b->engine, v, b->name, known, b->name, trw__backend_newest(b));
  return TRW_EBACKEND;
}

int trw__version_cmp(const char *a, const char *b)
{
  while (*a || *b) {
    char *ea, *eb;
    unsigned long x = strtoul(a, &ea, 10), y = strtoul(b, &eb, 10);
    if (x != y)
      return x < y ? -1 : 1;
    a = *ea == '.' ? ea + 1 : ea;
    b = *eb == '.' ? eb + 1 : eb;
    if (ea == a && eb == b) /* neither moved: not numbers */
      break;
  }
  return 0;
}

/* One item "<8.6" of a constraint, of n characters: its operator (0 for
 * none) and where its version starts.  Returns 0, or -1 if malformed. */
static int split_item(const char *s, size_t n, const char **op, size_t *oplen)
{
  size_t k = 0;
  while (k < n && strchr("<>=", s[k]))
    k++;
  *op = s;
  *oplen = k;
  int known_op = k == 0 || (k == 1 && (s[0] == '<' || s[0] == '>')) ||
                 (k == 2 && s[1] == '=' && strchr("<>=", s[0]));
  return known_op && is_version(s + k, n - k) ? 0 : -1;
}

static int item_holds(const char *s, size_t n, const char *version)
{
  const char *op;
  size_t oplen;
  if (split_item(s, n, &op, &oplen) != 0)
    return 0;
  char want[64];
  say(want, sizeof want, "%.*s", (int)(n - oplen), s + oplen);
  int c = trw__version_cmp(version, want);
  if (oplen == 0) { /* itself, or a version under it: "10" holds 10.15 */
    size_t w = strlen(want);
    return strcmp(version, want) == 0 || (strncmp(version, want, w) == 0 && version[w] == '.');
  }
  if (op[0] == '<')
    return oplen == 2 ? c <= 0 : c < 0;
  if (op[0] == '>')
    return oplen == 2 ? c >= 0 : c > 0;
  return c == 0; /* == */
}

int trw__version_matches(const char *constraint, const char *version)
{
  if (!constraint)
    return 1;
  if (!version || !*version)
    return 0;
  for (const char *p = constraint;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma ? (size_t)(comma - p) : strlen(p);
    if (!item_holds(p, n, version))
      return 0;
    if (!comma)
      return 1;
    p = comma + 1;
  }
}

int trw__backend_parse_registration(const char *spec, const trw__backend **out,
                                    const char **constraint, char *err, size_t errlen)
{
  const char *colon = spec ? strchr(spec, ':') : NULL;
  size_t n = colon ? (size_t)(colon - spec) : spec ? strlen(spec) : 0;
  const trw__backend *b = n == 0 && !colon ? &table[0] : find_n(spec, n);
  if (!b) {
    say(err, errlen, "unknown backend '%s' (known: %s)", spec, trw_known_backends());
    return TRW_EBACKEND;
  }
  *out = b;
  *constraint = NULL;
  if (!colon)
    return 0;
  char known[256];
  trw__backend_versions_text(b, known, sizeof known);
  if (!b->versions[0]) {
    say(err, errlen, "backend '%s': torchrw knows no versions of %s", spec, b->name);
    return TRW_EBACKEND;
  }
  const char *c = colon + 1;
  for (const char *p = c;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    const char *op;
    size_t oplen;
    if (split_item(p, len, &op, &oplen) != 0) {
      say(err, errlen,
               "backend '%s': '%.*s' is not a version constraint (write a dotted version, "
               "optionally after <, <=, >, >= or ==, comma-separated: %s:<8.6; known "
               "versions of %s: %s)",
               spec, (int)len, p, b->name, b->name, known);
      return TRW_EBACKEND;
    }
    if (!comma)
      break;
    p = comma + 1;
  }
  *constraint = c;
  return 0;
}
