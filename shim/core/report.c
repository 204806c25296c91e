/*
 * report.c - what fired: info lines per trace, and TORCHRW_REPORT.
 *
 * The report is JSON Lines: each trace appends one JSON object on a line
 * of its own (version, pid, backend, ir, opset, exporter, fired,
 * not_found), written when the trace's record closes.  Appending (under a
 * lock, output.c) lets every process that exports (fork children, a
 * multiprocessing pool) add its records to one file, and costs one
 * record's work per trace, however many came before.  Nothing is kept in
 * memory between traces, and without TORCHRW_REPORT no record is built.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

#define REPORT_VERSION 2

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int open_record; /* a trace began and its record is not closed */
static json_t *current;   /* the record, when the report is asked for */
static json_t *not_found; /* {"stable name": "why"} for the trace */
static pid_t owner;       /* the process the open record belongs to */

/* A fork child must not inherit the lock held by a thread it does not have. */
static void unlock_in_child(void) { pthread_mutex_init(&lock, NULL); }
__attribute__((constructor)) static void at_fork(void) { pthread_atfork(NULL, NULL, unlock_in_child); }

static void drop_record(void)
{
  json_decref(current);
  json_decref(not_found);
  current = not_found = NULL;
  open_record = 0;
}

static void flush_locked(void);

void trw__report_begin(const trw_env *env)
{
  pthread_mutex_lock(&lock);
  flush_locked();
  owner = getpid();
  open_record = 1;
  /* Opened here, so that a path that cannot be written is said at once. */
  if (trw__output_open(TRW__OUT_REPORT) == 0) {
    current = json_pack("{s:i, s:I, s:s, s:s, s:i, s:s}", "version", REPORT_VERSION, "pid",
                        (json_int_t)owner, "backend", trw_env_backend(env), "ir",
                        trw__ir_name(env ? env->ir : TRW_IR_ANY), "opset", env ? env->opset : 0,
                        "exporter", trw_exporter_name(trw_env_exporter(env)));
    not_found = json_object();
  }
  pthread_mutex_unlock(&lock);
}

void trw__report_not_found(const char *stable, const char *why)
{
  pthread_mutex_lock(&lock);
  if (not_found && stable && !json_object_get(not_found, stable))
    json_object_set_new(not_found, stable, json_string(why ? why : "not found"));
  pthread_mutex_unlock(&lock);
  trw__log(TRW__LOG_INFO, "%s: not found (%s)", stable ? stable : "?",
           why ? why : "no such target");
}

static void flush_locked(void)
{
  if (!open_record)
    return;
  if (owner != getpid()) {
    /* Inherited through fork: the parent reports it. */
    drop_record();
    return;
  }
  json_t *fired = current ? json_array() : NULL;
  size_t n = trw__registry_count();
  for (size_t i = 0; i < n; i++) {
    trw__rewriter *r = trw__registry_at(i);
    if (!r || r->hits == 0)
      continue;
    trw__log(TRW__LOG_INFO, "fired %s x%llu (%s:%d)", r->stable,
             (unsigned long long)r->hits, r->file, r->line);
    if (fired)
      json_array_append_new(
          fired, json_pack("{s:s, s:s, s:s, s:I, s:s, s:i}", "name", r->stable,
                           "target", r->name, "backend", r->backend, "count",
                           (json_int_t)r->hits, "file", r->file, "line", r->line));
    r->total_hits += r->hits;
    r->hits = 0;
  }
  if (current) {
    json_object_set_new(current, "fired", fired);
    json_object_set(current, "not_found", not_found);
    /* One line: no indent, keys sorted. */
    char *line = json_dumps(current, JSON_SORT_KEYS);
    size_t len = line ? strlen(line) : 0;
    char *whole = line ? realloc(line, len + 2) : NULL;
    if (whole) {
      whole[len] = '\n';
      whole[len + 1] = '\0';
      trw__output_write(TRW__OUT_REPORT, whole, len + 1);
    } else {
      trw__log(TRW__LOG_ERROR, "out of memory writing the report TORCHRW_REPORT");
    }
    free(whole ? whole : line);
  }
  drop_record();
}

void trw__report_flush(void)
{
  pthread_mutex_lock(&lock);
  flush_locked();
  pthread_mutex_unlock(&lock);
}

void trw__report_reset(void)
{
  pthread_mutex_lock(&lock);
  drop_record();
  pthread_mutex_unlock(&lock);
  trw__output_reset();
}
