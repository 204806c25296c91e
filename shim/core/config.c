/* config.c - the deployment config (TORCHRW_CONFIG), JSON read by jansson. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

struct trw_cfg {
  json_t *root;
  uint64_t serial;
};

uint64_t trw__cfg_serial(const trw_cfg *cfg) { return cfg ? cfg->serial : 0; }

int trw__cfg_parse(const char *buf, size_t len, const char *origin,
                   trw_cfg **out, char *err, size_t errlen)
{
  if (!out || (!buf && len)) {
    trw__fmt(err, errlen, "%s: no config given", origin ? origin : "config");
    return TRW_EINVAL;
  }
  *out = NULL;
  json_error_t je;
  json_t *root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    trw__fmt(err, errlen, "%s:%d:%d: %s", origin ? origin : "config", je.line,
             je.column, je.text);
    return TRW_ECONFIG;
  }
  if (!json_is_object(root)) {
    trw__fmt(err, errlen,
             "%s: the deployment config must be a JSON object "
             "({\"onnx_config\": {...}, \"backend_config\": {...}})",
             origin ? origin : "config");
    json_decref(root);
    return TRW_ECONFIG;
  }
  trw_cfg *cfg = malloc(sizeof *cfg);
  if (!cfg) {
    json_decref(root);
    trw__fmt(err, errlen, "%s: out of memory", origin ? origin : "config");
    return TRW_ENOMEM;
  }
  static uint64_t serials;
  cfg->root = root;
  cfg->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
  *out = cfg;
  return 0;
}

int trw__cfg_load(const char *path, trw_cfg **out, char *err, size_t errlen)
{
  if (!path || !*path || !out) {
    trw__fmt(err, errlen, "TORCHRW_CONFIG is empty");
    return TRW_EINVAL;
  }
  *out = NULL;
  /* Without blocking: opening a FIFO for reading waits for a writer. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    trw__fmt(err, errlen, "%s: cannot read the deployment config: %s", path,
             strerror(errno));
    if (fd >= 0)
      close(fd);
    return TRW_EIO;
  }
  if (!S_ISREG(st.st_mode)) {
    trw__fmt(err, errlen, "%s: the deployment config %s, not a regular file", path,
             S_ISFIFO(st.st_mode)  ? "is a FIFO"
             : S_ISDIR(st.st_mode) ? "is a directory"
             : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "is a device"
                                                          : "is a socket");
    close(fd);
    return TRW_EIO;
  }
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    trw__fmt(err, errlen, "%s: cannot read the deployment config: %s", path,
             strerror(errno));
    close(fd);
    return TRW_EIO;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 8192;
      char *grown = ncap > (64u << 20) ? NULL : realloc(buf, ncap);
      if (!grown) {
        free(buf);
        fclose(f);
        trw__fmt(err, errlen, "%s: deployment config too large", path);
        return TRW_ECONFIG;
      }
      buf = grown;
      cap = ncap;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0)
      break;
  }
  int rerr = ferror(f);
  fclose(f);
  if (rerr) {
    free(buf);
    trw__fmt(err, errlen, "%s: error reading the deployment config", path);
    return TRW_EIO;
  }
  int rc = trw__cfg_parse(buf, len, path, out, err, errlen);
  free(buf);
  return rc;
}

void trw__cfg_free(trw_cfg *cfg)
{
  if (!cfg)
    return;
  json_decref(cfg->root);
  free(cfg);
}

void *trw__cfg_root(const trw_cfg *cfg) { return cfg ? cfg->root : NULL; }

/* The member of obj whose key is the n bytes at key. */
static json_t *member(json_t *obj, const char *key, size_t n)
{
  char buf[256];
  char *k = n < sizeof buf ? buf : malloc(n + 1);
  if (!k)
    return NULL;
  memcpy(k, key, n);
  k[n] = '\0';
  json_t *v = json_object_get(obj, k);
  if (k != buf)
    free(k);
  return v;
}

/* The element of arr at the decimal index in the n bytes at s: digits
 * only, no sign, no space. */
static json_t *element(json_t *arr, const char *s, size_t n)
{
  size_t idx = 0, size = json_array_size(arr);
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return NULL;
    idx = idx * 10 + (size_t)(s[i] - '0');
    if (idx >= size)
      return NULL; /* also stops before idx can overflow */
  }
  return json_array_get(arr, idx);
}

/* Segments are separated by dots and none is empty: "", ".a", "a..b" and
 * "a." name nothing.  A key of any length is found. */
void *trw__cfg_lookup(const trw_cfg *cfg, const char *path)
{
  if (!cfg || !path)
    return NULL;
  json_t *cur = cfg->root;
  const char *p = path;
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n == 0)
      return NULL;
    if (json_is_object(cur))
      cur = member(cur, p, n);
    else if (json_is_array(cur))
      cur = element(cur, p, n);
    else
      return NULL;
    if (!cur || !dot)
      return cur;
    p = dot + 1;
  }
}

int trw_cfg_has(const trw_cfg *cfg, const char *path)
{
  return trw__cfg_lookup(cfg, path) != NULL;
}

int64_t trw_cfg_get_int(const trw_cfg *cfg, const char *path, int64_t def)
{
  json_t *v = trw__cfg_lookup(cfg, path);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

double trw_cfg_get_double(const trw_cfg *cfg, const char *path, double def)
{
  json_t *v = trw__cfg_lookup(cfg, path);
  return json_is_number(v) ? json_number_value(v) : def;
}

int trw_cfg_get_bool(const trw_cfg *cfg, const char *path, int def)
{
  json_t *v = trw__cfg_lookup(cfg, path);
  return json_is_boolean(v) ? json_is_true(v) : def;
}

const char *trw_cfg_get_string(const trw_cfg *cfg, const char *path,
                               const char *def)
{
  json_t *v = trw__cfg_lookup(cfg, path);
  return json_is_string(v) ? json_string_value(v) : def;
}
