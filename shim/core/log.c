/* log.c - the "torchrw:" log on stderr, filtered by TORCHRW_LOG. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Read from TORCHRW_LOG at the first message (registrations log before
 * activation) and again at activation; -1 until then. */
static int level = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void trw__log_init(void)
{
  level = TRW__LOG_WARN;
  const char *v = getenv("TORCHRW_LOG");
  if (!v || !*v)
    return;
  for (int i = 0; i < 4; i++) {
    if (strcmp(v, level_names[i]) == 0) {
      level = i;
      return;
    }
  }
  if (strcmp(v, "warning") == 0) {
    level = TRW__LOG_WARN;
    return;
  }
  trw__log(TRW__LOG_WARN,
           "TORCHRW_LOG=%s is not a level (error, warn, info, debug); "
           "using warn",
           v);
}

void trw__log_set_level(trw__level l) { level = l; }
static int current(void)
{
  if (level < 0)
    trw__log_init();
  return level;
}

trw__level trw__log_level(void) { return (trw__level)current(); }
int trw__log_enabled(trw__level l) { return (int)l <= current(); }

void trw__vlog(trw__level l, const char *fmt, va_list ap)
{
  if (!trw__log_enabled(l))
    return;
  /* One write per message, so that lines from threads do not interleave. */
  char line[2048];
  int n = 0;
  if (l == TRW__LOG_ERROR)
    n = snprintf(line, sizeof line, "torchrw: error: ");
  else if (l == TRW__LOG_WARN)
    n = snprintf(line, sizeof line, "torchrw: warning: ");
  else
    n = snprintf(line, sizeof line, "torchrw: ");
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  size_t len = strlen(line);
  line[len++] = '\n';
  fwrite(line, 1, len, stderr);
  fflush(stderr);
}

void trw__log(trw__level l, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  trw__vlog(l, fmt, ap);
  va_end(ap);
}

char *trw__fmt(char *buf, size_t len, const char *fmt, ...)
{
  if (!buf || len == 0)
    return buf;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, len, fmt, ap);
  va_end(ap);
  if (n < 0)
    buf[0] = '\0';
  return buf;
}

char *trw__strdup(const char *s)
{
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}
