/* report.c - what fired: info lines per trace, and TORCHRW_REPORT as JSON. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static const char *const ir_names[] = {"any", "onnx", "torchscript"};

static json_t *traces;    /* every trace of the process so far */
static json_t *current;   /* the trace under way, or ended but not flushed */
static json_t *not_found; /* {"stable name": "why"} for the trace */
static int write_failed;
static pid_t owner; /* the process the open record belongs to */

void trw__report_begin(const trw_env *env)
{
  trw__report_flush();
  owner = getpid();
  current = json_pack("{s:s, s:s, s:i, s:s}", "backend", trw_env_backend(env), "ir",
                      ir_names[env ? env->ir : 0], "opset", env ? env->opset : 0, "exporter",
                      trw_exporter_name(trw_env_exporter(env)));
  not_found = json_object();
}

void trw__report_not_found(const char *stable, const char *why)
{
  if (not_found && stable && !json_object_get(not_found, stable))
    json_object_set_new(not_found, stable, json_string(why ? why : "not found"));
  trw__log(TRW__LOG_INFO, "%s: not found (%s)", stable ? stable : "?",
           why ? why : "no such target");
}

static void write_report(void)
{
  const char *path = getenv("TORCHRW_REPORT");
  if (!path || !*path || write_failed)
    return;
  json_t *doc = json_pack("{s:i, s:O}", "version", 1, "traces", traces);
  /* Write beside and rename, so a reader never sees half a report. */
  char tmp[4096];
  trw__fmt(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  int rc = doc ? json_dump_file(doc, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) : -1;
  if (rc == 0 && rename(tmp, path) != 0)
    rc = -1;
  if (rc != 0) {
    remove(tmp);
    write_failed = 1;
    trw__log(TRW__LOG_ERROR, "cannot write the report TORCHRW_REPORT=%s", path);
  }
  json_decref(doc);
}

void trw__report_flush(void)
{
  if (!current)
    return;
  if (owner != getpid()) {
    /* Inherited through fork: the parent reports it. */
    trw__report_reset();
    return;
  }
  if (!traces)
    traces = json_array();
  json_t *fired = json_array();
  size_t n = trw__registry_count();
  for (size_t i = 0; i < n; i++) {
    trw__rewriter *r = trw__registry_at(i);
    if (!r || r->hits == 0)
      continue;
    trw__log(TRW__LOG_INFO, "fired %s x%llu (%s:%d)", r->stable,
             (unsigned long long)r->hits, r->file, r->line);
    json_array_append_new(
        fired, json_pack("{s:s, s:s, s:s, s:I, s:s, s:i}", "name", r->stable,
                         "target", r->name, "backend", r->backend, "count",
                         (json_int_t)r->hits, "file", r->file, "line", r->line));
    r->total_hits += r->hits;
    r->hits = 0;
  }
  json_object_set_new(current, "fired", fired);
  json_object_set(current, "not_found", not_found);
  json_array_append_new(traces, current);
  current = NULL;
  json_decref(not_found);
  not_found = NULL;
  write_report();
}

void trw__report_reset(void)
{
  json_decref(traces);
  json_decref(current);
  json_decref(not_found);
  traces = current = not_found = NULL;
  write_failed = 0;
}
