/*
 * cmd_util.c - what the subcommands share: errors, loading, options,
 * running a helper process.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd.h"

void trw__cmd_error(const char *file, const char *fmt, ...)
{
  va_list ap;

  fprintf(stderr, "torchrw: %s: ", file);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

int trw__cmd_load(const char *path, trw__onnx_model **out,
                  trw__onnx_extref **refs, size_t *nrefs)
{
  char err[512];
  trw__onnx_extref *list = NULL;
  size_t n = 0;
  int rc;

  *out = NULL;
  rc = trw__onnx_load(path, out, err, sizeof(err));
  if (rc != 0) {
    trw__cmd_error(path, "%s", err);
    return TRW__EXIT_BAD;
  }
  rc = trw__onnx_extdata(*out, &list, &n, err, sizeof(err));
  if (rc != 0) {
    trw__cmd_error(path, "%s", err);
    free(list);
    trw__onnx_free(*out);
    *out = NULL;
    return TRW__EXIT_BAD;
  }
  if (refs != NULL) {
    *refs = list;
    *nrefs = n;
  } else {
    free(list);
  }
  return 0;
}

static void accepted(const char *cmd, const trw__opt *opts)
{
  fprintf(stderr, "torchrw %s: accepted options:", cmd);
  for (const trw__opt *o = opts; o->name != NULL; o++)
    fprintf(stderr, " %s%s", o->name, o->takes_value ? " VALUE" : "");
  fprintf(stderr, " --help\n");
}

int trw__cmd_parse(const char *cmd, int argc, char **argv,
                   const trw__opt *opts, int *help, const char **pos,
                   int maxpos, int *npos)
{
  int only_pos = 0;

  *help = 0;
  *npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const trw__opt *o;
    size_t len;

    if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
      if (*npos >= maxpos) {
        fprintf(stderr, "torchrw %s: too many arguments at '%s' (see "
                        "torchrw %s --help)\n", cmd, a, cmd);
        return TRW__EXIT_BAD;
      }
      pos[(*npos)++] = a;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      *help = 1;
      continue;
    }
    len = strcspn(a, "=");
    for (o = opts; o->name != NULL; o++)
      if (strlen(o->name) == len && strncmp(o->name, a, len) == 0)
        break;
    if (o->name == NULL) {
      fprintf(stderr, "torchrw %s: unknown option '%s'\n", cmd, a);
      accepted(cmd, opts);
      return TRW__EXIT_BAD;
    }
    if (!o->takes_value) {
      if (a[len] == '=') {
        fprintf(stderr, "torchrw %s: option '%s' takes no value\n", cmd,
                o->name);
        return TRW__EXIT_BAD;
      }
      *o->flag = 1;
    } else if (a[len] == '=') {
      *o->value = a + len + 1;
    } else if (i + 1 < argc) {
      *o->value = argv[++i];
    } else {
      fprintf(stderr, "torchrw %s: option '%s' needs a value\n", cmd,
              o->name);
      return TRW__EXIT_BAD;
    }
  }
  return 0;
}

char *trw__cmd_bytes(unsigned long long bytes, char *buf, size_t buflen)
{
  static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = -1;

  if (bytes < 1024) {
    snprintf(buf, buflen, "%llu B", bytes);
    return buf;
  }
  while (v >= 1024.0 && u < 3) {
    v /= 1024.0;
    u++;
  }
  snprintf(buf, buflen, "%.1f %s", v, units[u]);
  return buf;
}

char *trw__cmd_capture(const char *cmd, char *const argv[], int *status)
{
  int fds[2];
  if (pipe(fds) != 0)
    return NULL;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return NULL;
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execvp(argv[0], argv);
    fprintf(stderr, "torchrw %s: cannot run %s: %s\n", cmd, argv[0], strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  size_t len = 0, cap = 65536;
  char *buf = malloc(cap);
  ssize_t n;
  while (buf && (n = read(fds[0], buf + len, cap - len - 1)) != 0) {
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    len += (size_t)n;
    if (cap - len < 4096) {
      char *grown = realloc(buf, cap * 2);
      if (!grown) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = grown;
      cap *= 2;
    }
  }
  close(fds[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
    ;
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  if (buf)
    buf[len] = '\0';
  return buf;
}
