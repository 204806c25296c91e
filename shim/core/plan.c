/*
 * plan.c - the rewriters an environment selects, worked out once.
 *
 * An export asks, per kind, which rewriter wins for each name under its
 * environment (trw__select: the backend's over the default's, then rank,
 * then the later registration).  The plan answers that for every name at
 * once, the first time an environment asks, and keeps the answer until the
 * registry changes (a registration, TORCHRW_DISABLE, a reset: its
 * generation).  The registry refuses registrations while an export is
 * rewritten, so a plan handed out during an export stays valid through it:
 * a plan of the registry's current generation is never freed, and a stale
 * one is freed when a plan is next asked for, which can only happen after
 * the registry changed, so when no export holds it.  Checkers are functions
 * of the environment (Python's see its fields), so a plan holds for every
 * export of the same environment; the config is told apart by its serial,
 * not its address, which a later config may reuse.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define NKINDS 3

typedef struct {
  trw_env env; /* what it was built for; backend and version are static strings,
                * cfg only for its serial */
  uint64_t generation;
  trw__rewriter **winners[NKINDS];
  size_t count[NKINDS];
} plan;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static plan **plans; /* one per environment asked about */
static size_t nplans, capplans;

static void reset_in_child(void) { pthread_mutex_init(&lock, NULL); }
__attribute__((constructor)) static void at_fork(void) { pthread_atfork(NULL, NULL, reset_in_child); }

static int same_str(const char *a, const char *b)
{
  return a == b || (a && b && strcmp(a, b) == 0);
}

static int same_env(const trw_env *a, const trw_env *b)
{
  return same_str(a->backend, b->backend) && a->ir == b->ir && a->opset == b->opset &&
         a->exporter == b->exporter && a->torch_major == b->torch_major &&
         a->torch_minor == b->torch_minor && trw__cfg_serial(a->cfg) == trw__cfg_serial(b->cfg) &&
         same_str(trw__env_version(a), trw__env_version(b));
}

static void free_plan(plan *p)
{
  if (!p)
    return;
  for (int k = 0; k < NKINDS; k++)
    free(p->winners[k]);
  free(p);
}

static plan *build(const trw_env *env, uint64_t generation)
{
  plan *p = calloc(1, sizeof *p);
  size_t n = trw__registry_count();
  if (!p)
    return NULL;
  p->env = *env;
  p->generation = generation;
  for (int k = 0; k < NKINDS; k++)
    if (!(p->winners[k] = malloc((n ? n : 1) * sizeof *p->winners[k]))) {
      free_plan(p);
      return NULL;
    }
  for (size_t i = 0; i < n; i++) {
    trw__rewriter *r = trw__registry_at(i);
    if (r && r->kind >= 0 && r->kind < NKINDS && trw__select(r->kind, r->name, env) == r)
      p->winners[r->kind][p->count[r->kind]++] = r;
  }
  return p;
}

/* env's plan, built if need be; the lock held.  NULL when out of memory. */
static plan *find_locked(const trw_env *env)
{
  uint64_t generation = trw__registry_generation();
  plan *found = NULL;
  size_t kept = 0;
  for (size_t i = 0; i < nplans; i++) {
    if (plans[i]->generation != generation) {
      free_plan(plans[i]); /* the registry changed: no export holds it */
      continue;
    }
    plans[kept++] = plans[i];
    if (!found && same_env(&plans[kept - 1]->env, env))
      found = plans[kept - 1];
  }
  nplans = kept;
  if (!found && nplans == capplans) {
    size_t cap = capplans ? capplans * 2 : 4;
    plan **grown = realloc(plans, cap * sizeof *grown);
    if (grown) {
      plans = grown;
      capplans = cap;
    }
  }
  if (!found && nplans < capplans && (found = build(env, generation)) != NULL)
    plans[nplans++] = found;
  if (!found)
    trw__log(TRW__LOG_ERROR, "out of memory while selecting the rewriters");
  return found;
}

trw__rewriter *const *trw__plan_winners(const trw_env *env, trw_kind kind, size_t *n)
{
  *n = 0;
  if (!env || kind < 0 || kind >= NKINDS)
    return NULL;
  pthread_mutex_lock(&lock);
  plan *p = find_locked(env);
  if (p)
    *n = p->count[kind];
  pthread_mutex_unlock(&lock);
  return p ? p->winners[kind] : NULL;
}

int trw__plan_selects(const trw_env *env, const trw__rewriter *r)
{
  if (!env || !r || r->kind < 0 || r->kind >= NKINDS)
    return 0;
  int selected = 0;
  /* Under the lock: outside an export the registry may change meanwhile. */
  pthread_mutex_lock(&lock);
  plan *p = find_locked(env);
  for (size_t i = 0; p && i < p->count[r->kind] && !selected; i++)
    selected = p->winners[r->kind][i] == r;
  pthread_mutex_unlock(&lock);
  return selected;
}

void trw__plan_reset(void)
{
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < nplans; i++)
    free_plan(plans[i]);
  free(plans);
  plans = NULL;
  nplans = capplans = 0;
  pthread_mutex_unlock(&lock);
}
