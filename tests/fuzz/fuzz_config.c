/*
 * fuzz_config.c - libFuzzer target for the deployment config
 * (shim/core/config.c): the parser, reading a config from a file, the
 * dotted-path lookup and the typed getters of include/torchrw.h.
 *
 * An input is the config text, then optionally a NUL byte and lookups, one
 * dotted path each, separated by NUL bytes:
 *
 *     {"onnx_config": {"input_names": ["x"]}}\0onnx_config.input_names.0\0a..b
 *
 * Each lookup, and the path of every value in the config (up to a bound),
 * goes through trw_cfg_has and every trw_cfg_get_*, and each answer is
 * checked against a lookup written here from the contract in torchrw.h:
 * segments separated by dots, none empty; an object's member by its whole
 * key, an array's element by a decimal index; anything else is missing and
 * gives the default.  The same text read from a file by trw__cfg_load must
 * give the same answer and the same error as trw__cfg_parse.
 *
 * Built by bench/fuzz.sh with jansson compiled from source with the same
 * instrumentation, so the fuzzer is guided through its parser too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "torchrw.h"

/* Internal functions of the core, declared as shim/core/core.h does. */
int trw__cfg_parse(const char *buf, size_t len, const char *origin,
                   trw_cfg **out, char *err, size_t errlen);
int trw__cfg_load(const char *path, trw_cfg **out, char *err, size_t errlen);
void trw__cfg_free(trw_cfg *cfg);
uint64_t trw__cfg_serial(const trw_cfg *cfg);
void *trw__cfg_lookup(const trw_cfg *cfg, const char *path);
void *trw__cfg_root(const trw_cfg *cfg);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bounds that keep one input fast: values walked, lookups taken. */
enum { MAX_WALK = 512, MAX_LOOKUPS = 64, MAX_PATH = 4096 };

static int memfd = -1;
static char memfd_path[64];

#define CHECK(cond, ...)                                                     \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "fuzz_config: check failed: %s: ", #cond);            \
      fprintf(stderr, __VA_ARGS__);                                          \
      fputc('\n', stderr);                                                   \
      abort();                                                               \
    }                                                                        \
  } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  /* A fixed hash seed: the same input takes the same path every run. */
  json_object_seed(1);
  memfd = memfd_create("fuzz_config", MFD_CLOEXEC);
  if (memfd >= 0)
    snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
  return 0;
}

/* The value at path by the contract, or NULL. */
static json_t *expected_lookup(json_t *root, const char *path)
{
  json_t *cur = root;
  const char *p = path;
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n == 0)
      return NULL;
    if (json_is_object(cur)) {
      char *key = strndup(p, n);
      if (!key)
        abort();
      cur = json_object_get(cur, key);
      free(key);
    } else if (json_is_array(cur)) {
      size_t idx = 0;
      for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
          return NULL;
        if (idx > (SIZE_MAX - 9) / 10)
          return NULL; /* beyond any array */
        idx = idx * 10 + (size_t)(p[i] - '0');
      }
      cur = json_array_get(cur, idx);
    } else {
      return NULL;
    }
    if (!cur || !dot)
      return cur;
    p = dot + 1;
  }
}

/* Every question torchrw.h lets a rewriter ask about path, against the
 * expected value. */
static void check_path(const trw_cfg *cfg, json_t *root, const char *path)
{
  json_t *want = expected_lookup(root, path);
  json_t *got = trw__cfg_lookup(cfg, path);

  CHECK(got == want, "path \"%s\": lookup gave %p (type %d), expected %p (type %d)",
        path, (void *)got, got ? json_typeof(got) : -1, (void *)want,
        want ? json_typeof(want) : -1);
  CHECK(trw_cfg_has(cfg, path) == (want != NULL), "path \"%s\"", path);

  /* Two defaults each, so a default that happens to equal the value
   * cannot hide a wrong answer. */
  for (int i = 0; i < 2; i++) {
    int64_t idef = i ? INT64_MIN : 7;
    double ddef = i ? -1.5 : 2.25;
    int bdef = i ? -1 : 5;
    const char *sdef = i ? "default" : NULL;

    int64_t iv = trw_cfg_get_int(cfg, path, idef);
    CHECK(iv == (json_is_integer(want) ? (int64_t)json_integer_value(want) : idef),
          "path \"%s\": get_int %lld", path, (long long)iv);
    double dv = trw_cfg_get_double(cfg, path, ddef);
    CHECK(dv == (json_is_number(want) ? json_number_value(want) : ddef),
          "path \"%s\": get_double %g", path, dv);
    int bv = trw_cfg_get_bool(cfg, path, bdef);
    CHECK(bv == (json_is_true(want) ? 1 : json_is_false(want) ? 0 : bdef),
          "path \"%s\": get_bool %d", path, bv);
    const char *sv = trw_cfg_get_string(cfg, path, sdef);
    CHECK(sv == (json_is_string(want) ? json_string_value(want) : sdef),
          "path \"%s\": get_string %p", path, (const void *)sv);
    if (sv)
      CHECK(strlen(sv) == (json_is_string(want) ? json_string_length(want) : strlen(sdef)),
            "path \"%s\"", path);
  }
}

/* Checks the path of every value under v (depth first, at most *budget of
 * them): each must be found again at its own path.  path holds len bytes. */
static void walk(const trw_cfg *cfg, json_t *root, json_t *v, char *path,
                 size_t len, int *budget)
{
  if (--*budget < 0)
    return;
  path[len] = '\0';
  if (len > 0)
    check_path(cfg, root, path);
  if (json_is_object(v)) {
    const char *key;
    json_t *child;
    json_object_foreach(v, key, child) {
      size_t klen = strlen(key);
      /* A key that is empty or holds a dot has no dotted path. */
      if (klen == 0 || strchr(key, '.') || len + klen + 2 > MAX_PATH)
        continue;
      size_t at = len;
      if (len > 0)
        path[at++] = '.';
      memcpy(path + at, key, klen);
      walk(cfg, root, child, path, at + klen, budget);
      path[len] = '\0';
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *child;
    json_array_foreach(v, i, child) {
      char idx[32];
      int n = snprintf(idx, sizeof idx, len > 0 ? ".%zu" : "%zu", i);
      if (len + (size_t)n + 1 > MAX_PATH)
        break;
      memcpy(path + len, idx, (size_t)n + 1);
      walk(cfg, root, child, path, len + (size_t)n, budget);
      path[len] = '\0';
    }
  }
}

/* Parses the text as a string and again from a file: both must agree. */
static int parse_both(const char *text, size_t len, trw_cfg **out, char *err,
                      size_t errlen)
{
  const char *origin = memfd >= 0 ? memfd_path : "fuzz.json";
  int rc = trw__cfg_parse(text, len, origin, out, err, errlen);

  if (rc == 0) {
    CHECK(*out != NULL, "success must hand back a config");
    CHECK(json_is_object((json_t *)trw__cfg_root(*out)), "the root is an object");
  } else {
    CHECK(*out == NULL && err[0] != '\0', "failure leaves nothing and says why");
  }
  CHECK(memchr(err, '\0', errlen) != NULL, "the message is terminated");

  if (memfd >= 0 && ftruncate(memfd, 0) == 0 &&
      pwrite(memfd, text, len, 0) == (ssize_t)len) {
    trw_cfg *again = NULL;
    char err2[512];
    err2[0] = '\0';
    int rc2 = trw__cfg_load(memfd_path, &again, err2, sizeof err2);
    CHECK(rc2 == rc, "load gave %d, parse %d", rc2, rc);
    CHECK(rc != 0 || again != NULL, "load handed back no config");
    CHECK(rc == 0 || strcmp(err, err2) == 0, "parse said \"%s\", load \"%s\"", err, err2);
    if (again) {
      CHECK(trw__cfg_serial(again) != trw__cfg_serial(*out), "two configs, one serial");
      CHECK(json_equal(trw__cfg_root(again), trw__cfg_root(*out)), "load and parse differ");
    }
    trw__cfg_free(again);
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *text = (const char *)data;
  const uint8_t *nul = memchr(data, '\0', size);
  size_t textlen = nul ? (size_t)(nul - data) : size;
  trw_cfg *cfg = NULL;
  char err[512];
  static uint64_t last_serial;

  err[0] = '\0';
  if (parse_both(text, textlen, &cfg, err, sizeof err) != 0)
    return 0;
  CHECK(trw__cfg_serial(cfg) > last_serial, "serials only grow");
  last_serial = trw__cfg_serial(cfg);

  json_t *root = trw__cfg_root(cfg);
  /* Neither a missing config nor a missing path is an error. */
  CHECK(trw_cfg_get_int(NULL, "a", 3) == 3 && !trw_cfg_has(NULL, "a"), "NULL cfg");
  CHECK(!trw_cfg_has(cfg, NULL) && trw_cfg_get_string(cfg, NULL, "d")[0] == 'd',
        "NULL path");

  /* The lookups the input names. */
  if (nul) {
    const uint8_t *p = nul + 1, *end = data + size;
    for (int n = 0; p < end && n < MAX_LOOKUPS; n++) {
      const uint8_t *q = memchr(p, '\0', (size_t)(end - p));
      size_t plen = q ? (size_t)(q - p) : (size_t)(end - p);
      char *path = strndup((const char *)p, plen);
      if (!path)
        abort();
      check_path(cfg, root, path);
      free(path);
      p += plen + 1;
    }
  }

  /* Every value's own path. */
  char *path = malloc(MAX_PATH + 1);
  if (!path)
    abort();
  int budget = MAX_WALK;
  walk(cfg, root, root, path, 0, &budget);
  free(path);

  trw__cfg_free(cfg);
  return 0;
}
