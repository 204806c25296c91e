/*
 * check_table.c - finds and loads backend capability tables.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core.h" /* trw__backend_index: the backends torchrw knows */

#ifndef TORCHRW_DATA_DEFAULT
#define TORCHRW_DATA_DEFAULT "data"
#endif

static int is_dir(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The data directory: the first of $TORCHRW_DATA, <exe>/../share/torchrw
 * and the compile-time default that has a backends/ directory.
 * TORCHRW_DATA, when set, is the only place looked at. */
static const char *data_dir(char *buf, size_t buflen)
{
  const char *env = getenv("TORCHRW_DATA");
  char exe[PATH_MAX], probe[PATH_MAX + 32];
  ssize_t n;

  if (env != NULL && env[0] != '\0')
    return env;
  n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    char *slash;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash != NULL) {
      *slash = '\0';
      int w1 = snprintf(buf, buflen, "%s/../share/torchrw", exe);
      int w2 = snprintf(probe, sizeof(probe), "%s/backends", buf);
      if (w1 > 0 && (size_t)w1 < buflen && w2 > 0 &&
          (size_t)w2 < sizeof(probe) && is_dir(probe))
        return buf;
    }
  }
  return TORCHRW_DATA_DEFAULT;
}

/* Backend names are plain words, so they cannot point outside backends/. */
static int plain_word(const char *s)
{
  if (s == NULL || s[0] == '\0' || s[0] == '.' || s[0] == '-' ||
      strlen(s) > 64)
    return 0;
  for (; *s != '\0'; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '-' || *s == '.'))
      return 0;
  return 1;
}

static int cmp_names(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Writes the known backends, comma-separated, into buf. */
static void known(const char *dir, char *buf, size_t buflen)
{
  char path[PATH_MAX + 16], *names[64];
  size_t n = 0, used = 0;
  struct dirent *de;
  DIR *d;

  buf[0] = '\0';
  if (snprintf(path, sizeof(path), "%s/backends", dir) >= (int)sizeof(path))
    return;
  d = opendir(path);
  if (d == NULL) {
    if (snprintf(buf, buflen, "none: %s does not exist", path) < 0)
      buf[0] = '\0';
    return;
  }
  while ((de = readdir(d)) != NULL && n < 64) {
    size_t len = strlen(de->d_name);
    if (len > 5 && strcmp(de->d_name + len - 5, ".json") == 0 &&
        de->d_name[0] != '.') {
      names[n] = strndup(de->d_name, len - 5);
      if (names[n] != NULL)
        n++;
    }
  }
  closedir(d);
  qsort(names, n, sizeof(names[0]), cmp_names);
  for (size_t i = 0; i < n; i++) {
    int w = snprintf(buf + used, buflen - used, "%s%s", i ? ", " : "",
                     names[i]);
    if (w > 0 && (size_t)w < buflen - used)
      used += (size_t)w;
    free(names[i]);
  }
}

json_t *trw__check_load_table(const char *backend, char *err, size_t errlen)
{
  char dirbuf[PATH_MAX + 32], path[PATH_MAX + 128], list[512];
  const char *dir = data_dir(dirbuf, sizeof(dirbuf));
  json_error_t jerr;
  json_t *table;
  struct stat st;

  if (!plain_word(backend)) {
    known(dir, list, sizeof(list));
    snprintf(err, errlen, "unknown backend '%s' (known: %s)",
             backend != NULL ? backend : "", list);
    return NULL;
  }
  if (snprintf(path, sizeof(path), "%s/backends/%s.json", dir, backend) >=
          (int)sizeof(path) ||
      stat(path, &st) != 0) {
    known(dir, list, sizeof(list));
    /* A backend torchrw rewrites for but has no table of: say that, not
     * "unknown", and never pass the file unchecked. */
    if (trw__backend_index(backend) >= 0)
      snprintf(err, errlen,
               "no capability table for backend '%s': torchrw rewrites exports "
               "for it, but has no table of what it accepts, so nothing was "
               "checked (tables: %s)", backend, list);
    else
      snprintf(err, errlen, "unknown backend '%s' (known: %s)", backend, list);
    return NULL;
  }
  table = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (table == NULL) {
    snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
    return NULL;
  }
  if (!json_is_object(table) || !json_is_object(json_object_get(table,
                                                                "domains"))) {
    snprintf(err, errlen, "%s: not a capability table (no \"domains\" "
                          "object)", path);
    json_decref(table);
    return NULL;
  }
  return table;
}
