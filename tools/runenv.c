/* runenv.c - locating torchrw's libraries and passing options as variables. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runenv.h"

static char *join(char *list, const char *item, char sep)
{
  size_t a = list ? strlen(list) : 0, b = strlen(item);
  char *out = realloc(list, a + b + 2);
  if (!out)
    return list;
  if (a)
    out[a++] = sep;
  memcpy(out + a, item, b + 1);
  return out;
}

int trw__runopts_take(const char *cmd, trw__runopts *o, int argc, char **argv, int *i)
{
  static const struct {
    const char *name;
    char sep; /* lists: the separator; 0 for single values */
  } known[] = {{"--backend", 0}, {"--config", 0}, {"--report", 0}, {"--log", 0},
               {"--plugin", ':'}, {"--python", ','}, {"--disable", ','}};
  const char *a = argv[*i];
  if (strcmp(a, "--trace") == 0 || strncmp(a, "--trace=", 8) == 0) {
    o->trace = 1;
    o->trace_file = a[7] == '=' ? a + 8 : NULL;
    return 1;
  }
  size_t len = strcspn(a, "=");
  for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
    if (strlen(known[k].name) != len || strncmp(a, known[k].name, len) != 0)
      continue;
    const char *v = a[len] == '=' ? a + len + 1 : NULL;
    if (!v) {
      if (*i + 1 >= argc) {
        fprintf(stderr, "torchrw %s: option '%s' needs a value\n", cmd, known[k].name);
        return -1;
      }
      v = argv[++*i];
    }
    switch (k) {
    case 0: o->backend = v; break;
    case 1: o->config = v; break;
    case 2: o->report = v; break;
    case 3: o->log = v; break;
    case 4: o->plugins = join(o->plugins, v, ':'); break;
    case 5: o->python = join(o->python, v, ','); break;
    default: o->disable = join(o->disable, v, ','); break;
    }
    return 1;
  }
  return 0;
}

void trw__runopts_free(trw__runopts *o)
{
  free(o->plugins);
  free(o->python);
  free(o->disable);
}

void trw__runopts_export(const trw__runopts *o)
{
  if (o->backend)
    setenv("TORCHRW_BACKEND", o->backend, 1);
  if (o->config)
    setenv("TORCHRW_CONFIG", o->config, 1);
  if (o->report)
    setenv("TORCHRW_REPORT", o->report, 1);
  if (o->log)
    setenv("TORCHRW_LOG", o->log, 1);
  if (o->plugins)
    setenv("TORCHRW_PLUGINS", o->plugins, 1);
  if (o->python)
    setenv("TORCHRW_PYTHON", o->python, 1);
  if (o->disable)
    setenv("TORCHRW_DISABLE", o->disable, 1);
  if (o->trace)
    setenv("TORCHRW_TRACE", o->trace_file ? o->trace_file : "1", 1);
}

int trw__libdir(char *buf, size_t len)
{
  const char *env = getenv("TORCHRW_LIBDIR");
  char exe[PATH_MAX];
  if (env && *env) {
    snprintf(buf, len, "%s", env);
  } else {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
      fprintf(stderr, "torchrw: cannot find its own executable\n");
      return -1;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
      *slash = '\0';
    /* build/tools/torchrw -> build/lib; prefix/bin/torchrw -> prefix/lib */
    snprintf(buf, len, "%s/../lib", exe);
  }
  char probe[PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/libtorchrw.so", buf);
  if (access(probe, R_OK) != 0) {
    fprintf(stderr, "torchrw: %s not found (set TORCHRW_LIBDIR to the directory "
                    "holding libtorchrw.so)\n", probe);
    return -1;
  }
  char real[PATH_MAX];
  if (realpath(buf, real))
    snprintf(buf, len, "%s", real);
  return 0;
}

void trw__env_prepend(const char *name, const char *dir, char sep)
{
  const char *old = getenv(name);
  if (!old || !*old) {
    setenv(name, dir, 1);
    return;
  }
  size_t n = strlen(dir) + strlen(old) + 2;
  char *v = malloc(n);
  if (!v)
    return;
  snprintf(v, n, "%s%c%s", dir, sep, old);
  setenv(name, v, 1);
  free(v);
}

const char *trw__python_exe(void)
{
  const char *p = getenv("PYTHON");
  return p && *p ? p : TORCHRW_DEFAULT_PYTHON;
}
