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
#include "backends.h" /* the backends torchrw knows, and their versions */

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
const char *trw__data_dir(char *buf, size_t buflen)
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

/* The file name (without .json) of a backend's table at version: "B-V"
 * for a backend with several versions, "B" for one with one. */
static void table_name(const trw__backend *b, const char *version, char *buf, size_t len)
{
  if (version && b->versions[0] && b->versions[1])
    snprintf(buf, len, "%s-%s", b->name, version);
  else
    snprintf(buf, len, "%s", b->name);
}

/* Writes the tables there are, comma-separated, into buf: each known
 * backend with the versions whose file exists ("tensorrt (8.5, 8.6,
 * 10.15)"), then any other table the directory holds, by its name. */
static void known(const char *dir, char *buf, size_t buflen)
{
  char path[PATH_MAX + 160], name[128];
  size_t used = 0, n;
  const trw__backend *all = trw__backends(&n);
  struct stat st;
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
  for (size_t i = 0; i < n; i++) {
    int first = 1;
    for (size_t k = 0; all[i].versions[k] != NULL; k++) {
      table_name(&all[i], all[i].versions[k], name, sizeof name);
      snprintf(path, sizeof path, "%s/backends/%s.json", dir, name);
      if (stat(path, &st) != 0)
        continue;
      int w = snprintf(buf + used, buflen - used, "%s%s%s%s", first ? (used ? ", " : "") : ", ",
                       first ? all[i].name : "", first ? " (" : "", all[i].versions[k]);
      if (w > 0 && (size_t)w < buflen - used)
        used += (size_t)w;
      first = 0;
    }
    if (!first) {
      int w = snprintf(buf + used, buflen - used, ")");
      if (w > 0 && (size_t)w < buflen - used)
        used += (size_t)w;
    }
  }
  /* Tables of backends torchrw does not rewrite for (a user's own). */
  while ((de = readdir(d)) != NULL) {
    size_t len = strlen(de->d_name);
    if (len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0 || de->d_name[0] == '.')
      continue;
    snprintf(name, sizeof name, "%.*s", (int)(len - 5), de->d_name);
    const char *dash = strchr(name, '-');
    size_t base = dash ? (size_t)(dash - name) : strlen(name);
    char b[128];
    snprintf(b, sizeof b, "%.*s", (int)base, name);
    if (trw__backend_find(b) != NULL)
      continue;
    int w = snprintf(buf + used, buflen - used, "%s%s", used ? ", " : "", name);
    if (w > 0 && (size_t)w < buflen - used)
      used += (size_t)w;
  }
  closedir(d);
}

static json_t *load_file(const char *path, const char *spec, const trw__backend *b,
                         const char *version, char *err, size_t errlen)
{
  json_error_t jerr;
  json_t *table = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
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
  /* A table says which version it describes; one that disagrees with its
   * name would judge files against another engine than asked for. */
  const json_t *v = json_object_get(table, "version");
  if (version != NULL && (!json_is_string(v) || strcmp(json_string_value(v), version) != 0)) {
    char known[256];
    snprintf(err, errlen,
             "%s: its \"version\" is %s%s%s, but backend '%s' asks for %s %s (known "
             "versions of %s: %s); the table's name and its version field must agree",
             path, json_is_string(v) ? "'" : "", json_is_string(v) ? json_string_value(v) : "missing",
             json_is_string(v) ? "'" : "", spec, b->engine, version, b->name,
             trw__backend_versions_text(b, known, sizeof known));
    json_decref(table);
    return NULL;
  }
  return table;
}

json_t *trw__check_load_table(const char *backend, char *err, size_t errlen)
{
  char dirbuf[PATH_MAX + 32], path[PATH_MAX + 128], list[512], name[128];
  const char *dir = trw__data_dir(dirbuf, sizeof(dirbuf));
  const trw__backend *b = NULL;
  const char *version = NULL;
  struct stat st;

  /* A spec with a version ("tensorrt:8.5") names a known backend's table
   * at that version; a bare name of a known backend, its newest table. */
  if (backend != NULL && strchr(backend, ':') != NULL) {
    if (trw__backend_parse(backend, &b, &version, err, errlen) != 0)
      return NULL;
  } else {
    b = backend != NULL && backend[0] != '\0' ? trw__backend_find(backend) : NULL;
    version = b != NULL ? trw__backend_newest(b) : NULL;
  }
  if (b != NULL)
    table_name(b, version, name, sizeof name);
  else
    snprintf(name, sizeof name, "%s", backend != NULL ? backend : "");
  if (!plain_word(name)) {
    known(dir, list, sizeof(list));
    snprintf(err, errlen, "unknown backend '%s' (known: %s)",
             backend != NULL ? backend : "", list);
    return NULL;
  }
  if (snprintf(path, sizeof(path), "%s/backends/%s.json", dir, name) >=
          (int)sizeof(path) ||
      stat(path, &st) != 0) {
    known(dir, list, sizeof(list));
    /* A backend torchrw rewrites for but has no table of: say that, not
     * "unknown", and never pass the file unchecked. */
    if (b != NULL)
      snprintf(err, errlen,
               "no capability table for backend '%s': torchrw rewrites exports "
               "for it, but has no table of what it accepts, so nothing was "
               "checked (tables: %s)", backend, list);
    else
      snprintf(err, errlen, "unknown backend '%s' (known: %s)", backend, list);
    return NULL;
  }
  return load_file(path, backend, b, version, err, errlen);
}

int trw__check_list_tables(FILE *out, int as_json)
{
  char dirbuf[PATH_MAX + 32], path[PATH_MAX + 128], name[128], err[1024];
  const char *dir = trw__data_dir(dirbuf, sizeof(dirbuf));
  size_t n;
  const trw__backend *all = trw__backends(&n);
  json_t *list = as_json ? json_array() : NULL;
  int bad = 0;

  if (as_json && list == NULL)
    return -1;
  for (size_t i = 0; i < n; i++) {
    const trw__backend *b = &all[i];
    const char *newest = trw__backend_newest(b);
    for (size_t k = 0; b->versions[k] != NULL; k++) {
      const char *v = b->versions[k];
      char spec[160];
      snprintf(spec, sizeof spec, "%s:%s", b->name, v);
      table_name(b, v, name, sizeof name);
      snprintf(path, sizeof path, "%s/backends/%s.json", dir, name);
      json_t *t = load_file(path, spec, b, v, err, sizeof err);
      const char *title = t ? json_string_value(json_object_get(t, "title")) : NULL;
      int is_newest = strcmp(v, newest) == 0;
      if (t == NULL)
        bad = 1;
      if (as_json) {
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:b, s:s, s:s?, s:s?}", "backend",
                                              b->name, "version", v, "spec", spec, "newest",
                                              is_newest, "file", path, "title", title,
                                              "error", t ? NULL : err));
      } else {
        fprintf(out, "%-18s %s%s%s%s\n%-18s %s\n", spec, title ? title : err,
                is_newest ? " (newest: --backend " : "", is_newest ? b->name : "",
                is_newest ? ")" : "", "", path);
      }
      json_decref(t);
    }
  }
  if (as_json) {
    char *text = json_dumps(list, JSON_INDENT(2));
    json_decref(list);
    if (text == NULL)
      return -1;
    fprintf(out, "%s\n", text);
    free(text);
  }
  return bad;
}
