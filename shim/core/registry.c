/* registry.c - rewriters by (kind, name, backend, IR), and selection. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static trw__rewriter **entries;
static size_t nentries, capentries;
static uint64_t generation, registrations;
static int active;

/* Refusals, kept for activation to report (constructors cannot). */
#define MAX_ERRORS 32
static char *errors[MAX_ERRORS];
static size_t nerrors;

static int is_disabled(const trw__rewriter *r);

static const char *const kind_names[] = {"function", "module", "symbolic"};

static void free_entry(trw__rewriter *r)
{
  if (!r)
    return;
  if (r->release && r->fn)
    r->release(r->fn);
  if (r->free_user_data)
    r->free_user_data(r->user_data);
  free(r->name);
  free(r->backend);
  free(r->versions);
  free(r->file);
  free(r->op);
  free(r->checker_names);
  free(r->stable);
  free(r);
}

static void keep_error(const char *msg)
{
  if (nerrors < MAX_ERRORS)
    errors[nerrors++] = trw__strdup(msg);
}

static int refuse(int code, char *err, size_t errlen, const char *fmt, ...)
    TRW_PRINTF(4, 5);
static int refuse(int code, char *err, size_t errlen, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  trw__log(TRW__LOG_ERROR, "%s", msg);
  keep_error(msg);
  if (err && errlen)
    trw__fmt(err, errlen, "%s", msg);
  return code;
}

static int same_key(const trw__rewriter *a, const trw__rewriter *b)
{
  return a->kind == b->kind && a->ir == b->ir && a->extra_key == b->extra_key &&
         a->builtin == b->builtin &&
         memcmp(a->checkers, b->checkers, sizeof a->checkers) == 0 &&
         strcmp(a->name, b->name) == 0 && strcmp(a->backend, b->backend) == 0 &&
         strcmp(a->versions ? a->versions : "", b->versions ? b->versions : "") == 0;
}

static int has_checkers(const trw__rewriter *r)
{
  return r->checkers[0] != NULL || r->extra_key != 0;
}

int trw_register(const trw_rewriter_def *def)
{
  return trw__register(def, TRW__LANG_C, 0, NULL, NULL, 0, NULL, 0);
}

int trw__register_builtin(const trw_rewriter_def *def)
{
  return trw__register(def, TRW__LANG_C, TRW__REG_BUILTIN, NULL, NULL, 0, NULL, 0);
}

int trw__rank(const trw__rewriter *r)
{
  /* One for some versions of its backend is more specific than one for
   * all of them, and ranks just below a user's over a built-in. */
  return (strcmp(r->backend, "default") != 0) << 4 | !r->builtin << 3 | (r->versions != NULL) << 2 |
         (r->ir != TRW_IR_ANY) << 1 | has_checkers(r);
}

/* A user's rewriter that outranks a built-in says so, naming both. */
static void note_precedence(const trw__rewriter *r)
{
  for (size_t i = 0; i < nentries; i++) {
    const trw__rewriter *e = entries[i];
    if (e == r || e->builtin == r->builtin || e->kind != r->kind ||
        strcmp(e->name, r->name) != 0 || strcmp(e->backend, r->backend) != 0)
      continue;
    const trw__rewriter *user = r->builtin ? e : r, *builtin = r->builtin ? r : e;
    trw__log(TRW__LOG_INFO,
             "%s rewriter %s registered at %s:%d takes precedence over the built-in "
             "%s registered at %s:%d",
             kind_names[r->kind], user->stable, user->file, user->line, builtin->stable,
             builtin->file, builtin->line);
    return;
  }
}

static int add(const trw_rewriter_def *def, trw__lang lang, unsigned flags,
               void (*release)(void *),
               int (*check_extra)(const struct trw__rewriter *, const trw_env *),
               uintptr_t extra_key, char *err, size_t errlen);

int trw__register(const trw_rewriter_def *def, trw__lang lang, unsigned flags,
                  void (*release)(void *),
                  int (*check_extra)(const struct trw__rewriter *,
                                     const trw_env *),
                  uintptr_t extra_key, char *err, size_t errlen)
{
  /* A definition of another API version cannot be read field by field:
   * its size and version come first so that they can be checked.  Before
   * version 2 the struct began with the kind (0 to 2). */
  if (def && def->size < offsetof(trw_rewriter_def, kind))
    return refuse(TRW_EVERSION, err, errlen,
                  "a rewriter was built against a torchrw header older than API version 2 "
                  "(it carries no version); this library speaks API version %d: rebuild it "
                  "against this torchrw's include/torchrw.h",
                  TRW_API_VERSION);
  if (def && (def->size != sizeof(trw_rewriter_def) || def->api_version != TRW_API_VERSION))
    return refuse(TRW_EVERSION, err, errlen,
                  "a rewriter was built for torchrw API version %d (a %zu-byte definition); "
                  "this library speaks API version %d (%zu bytes): rebuild it against this "
                  "torchrw's include/torchrw.h",
                  def->api_version, def->size, TRW_API_VERSION, sizeof(trw_rewriter_def));
  int rc = add(def, lang, flags, release, check_extra, extra_key, err, errlen);
  /* A refused registration's user data is the caller's no longer. */
  if (rc != 0 && def && def->free_user_data)
    def->free_user_data(def->user_data);
  return rc;
}

static int add(const trw_rewriter_def *def, trw__lang lang, unsigned flags,
               void (*release)(void *),
               int (*check_extra)(const struct trw__rewriter *, const trw_env *),
               uintptr_t extra_key, char *err, size_t errlen)
{
  if (!def || !def->fn || !def->file)
    return refuse(TRW_EINVAL, err, errlen,
                  "rewriter registration at %s:%d has no %s",
                  def && def->file ? def->file : "?", def ? def->line : 0,
                  !def ? "definition" : !def->fn ? "function" : "site");
  const char *site = def->file;
  int line = def->line;
  if ((unsigned)def->kind > TRW_KIND_SYMBOLIC || (unsigned)def->ir > TRW_IR_TORCHSCRIPT)
    return refuse(TRW_EINVAL, err, errlen,
                  "%s:%d: rewriter '%s' has an unknown kind or IR", site, line,
                  def->name ? def->name : "");
  if (!trw__name_valid(def->name))
    return refuse(TRW_ENAME, err, errlen,
                  "%s:%d: '%s' is not a valid rewriter name", site, line,
                  def->name ? def->name : "(null)");
  const trw__backend *b = NULL;
  const char *versions = NULL;
  char why[512];
  if (trw__backend_parse_registration(def->backend, &b, &versions, why, sizeof why) != 0)
    return refuse(TRW_EBACKEND, err, errlen, "%s:%d: rewriter '%s' names %s", site, line,
                  def->name, why);
  const char *backend = b->name;

  char op[256] = "";
  if (def->kind == TRW_KIND_FUNCTION && lang == TRW__LANG_C) {
    int rc = trw__name_to_op(def->name, op, sizeof op);
    if (rc != 0)
      return refuse(TRW_ENAME, err, errlen,
                    "%s:%d: C function rewriter '%s' does not name a torch "
                    "operator (write aten::op[.overload], torch.op or "
                    "torch.Tensor.op; Python functions take a Python "
                    "rewriter)",
                    site, line, def->name);
  }

  trw__rewriter *r = calloc(1, sizeof *r);
  if (!r)
    return refuse(TRW_ENOMEM, err, errlen, "%s:%d: out of memory", site, line);
  r->kind = def->kind;
  r->lang = lang;
  r->builtin = (flags & TRW__REG_BUILTIN) != 0;
  r->ir = def->ir;
  memcpy(r->checkers, def->checkers, sizeof r->checkers);
  r->fn = def->fn;
  r->release = release;
  r->user_data = def->user_data;
  r->free_user_data = def->free_user_data;
  r->check_extra = check_extra;
  r->extra_key = extra_key;
  r->line = line;
  r->name = trw__strdup(def->name);
  r->backend = trw__strdup(backend);
  r->versions = versions ? trw__strdup(versions) : NULL;
  r->file = trw__strdup(site);
  r->op = op[0] ? trw__strdup(op) : NULL;
  if (def->checkers[0] && def->checker_names && strcmp(def->checker_names, "NULL") != 0)
    r->checker_names = trw__strdup(def->checker_names);
  const char *prefix = r->builtin ? "builtin:" : "";
  size_t slen = strlen(prefix) + strlen(def->name) + strlen(backend) +
                (versions ? strlen(versions) + 1 : 0) + 2;
  r->stable = malloc(slen);
  if (!r->name || !r->backend || !r->file || !r->stable || (op[0] && !r->op) ||
      (versions && !r->versions)) {
    r->release = NULL; /* the caller keeps its reference on failure */
    r->free_user_data = NULL;
    free_entry(r);
    return refuse(TRW_ENOMEM, err, errlen, "%s:%d: out of memory", site, line);
  }
  trw__fmt(r->stable, slen, "%s%s@%s%s%s", prefix, def->name, backend, versions ? ":" : "",
           versions ? versions : "");

  pthread_mutex_lock(&lock);
  if (active) {
    pthread_mutex_unlock(&lock);
    r->release = NULL;
    r->free_user_data = NULL;
    free_entry(r);
    return refuse(TRW_EPHASE, err, errlen,
                  "%s:%d: rewriter '%s' registered while an export is being "
                  "rewritten; register before the export starts",
                  site, line, def->name);
  }
  if (nentries == capentries) {
    size_t cap = capentries ? capentries * 2 : 64;
    trw__rewriter **grown = realloc(entries, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&lock);
      r->release = NULL;
      r->free_user_data = NULL;
      free_entry(r);
      return refuse(TRW_ENOMEM, err, errlen, "%s:%d: out of memory", site, line);
    }
    entries = grown;
    capentries = cap;
  }
  trw__rewriter *old = NULL;
  for (size_t i = 0; i < nentries; i++) {
    if (same_key(entries[i], r)) {
      old = entries[i];
      memmove(entries + i, entries + i + 1, (nentries - i - 1) * sizeof *entries);
      nentries--;
      break;
    }
  }
  r->disabled = is_disabled(r);
  r->seq = ++registrations;
  entries[nentries++] = r;
  generation++;
  if (!old)
    note_precedence(r);
  pthread_mutex_unlock(&lock);

  if (old) {
    /* The same site again is a module imported again (after an interrupted
     * import, say), not a replacement to warn about. */
    int again = old->line == r->line && strcmp(old->file, r->file) == 0;
    trw__log(again ? TRW__LOG_DEBUG : TRW__LOG_WARN,
             "%s rewriter %s registered at %s:%d replaces the one "
             "registered at %s:%d",
             kind_names[r->kind], r->stable, r->file, r->line, old->file,
             old->line);
    free_entry(old);
  }
  return 0;
}

size_t trw__registry_error_count(void) { return nerrors; }

const char *trw__registry_error(size_t i)
{
  return i < nerrors && errors[i] ? errors[i] : "out of memory";
}

void trw__registry_clear_errors(void)
{
  for (size_t i = 0; i < nerrors; i++)
    free(errors[i]);
  nerrors = 0;
}

uint64_t trw__registry_generation(void) { return generation; }
size_t trw__registry_count(void) { return nentries; }

trw__rewriter *trw__registry_at(size_t i)
{
  return i < nentries ? entries[i] : NULL;
}

/* In a fork child the threads that traced are gone, and one of them may
 * have held the lock. */
static void reset_in_child(void)
{
  pthread_mutex_init(&lock, NULL);
  active = 0;
}
__attribute__((constructor)) static void at_fork(void) { pthread_atfork(NULL, NULL, reset_in_child); }

void trw__registry_set_active(int a)
{
  pthread_mutex_lock(&lock);
  active += a ? 1 : -1;
  if (active < 0)
    active = 0;
  pthread_mutex_unlock(&lock);
}

static int applies(const trw__rewriter *r, const trw_env *env)
{
  if (r->disabled)
    return 0;
  if (r->ir != TRW_IR_ANY && r->ir != env->ir)
    return 0;
  if (r->versions && !trw__version_matches(r->versions, trw__env_version(env)))
    return 0;
  for (int i = 0; i < 4 && r->checkers[i]; i++)
    if (!r->checkers[i](env))
      return 0;
  return !r->check_extra || r->check_extra(r, env);
}

/* Best of the entries for backend (trw__rank; then registered later). */
static trw__rewriter *best_for(trw_kind kind, const char *name,
                               const char *backend, const trw_env *env)
{
  trw__rewriter *best = NULL;
  int best_score = -1;
  for (size_t i = 0; i < nentries; i++) {
    trw__rewriter *r = entries[i];
    if (r->kind != kind || strcmp(r->backend, backend) != 0 ||
        strcmp(r->name, name) != 0 || !applies(r, env))
      continue;
    int score = trw__rank(r);
    if (score >= best_score) {
      best = r;
      best_score = score;
    }
  }
  return best;
}

trw__rewriter *trw__select(trw_kind kind, const char *name, const trw_env *env)
{
  if (!name || !env)
    return NULL;
  trw__rewriter *r = NULL;
  if (env->backend && strcmp(env->backend, "default") != 0)
    r = best_for(kind, name, env->backend, env);
  return r ? r : best_for(kind, name, "default", env);
}

/* TORCHRW_DISABLE, kept so that rewriters registered later (plugins,
 * Python modules) are switched off too. */
#define MAX_DISABLED 64
static char *disabled[MAX_DISABLED];
static size_t ndisabled;

static int is_disabled(const trw__rewriter *r)
{
  for (size_t i = 0; i < ndisabled; i++)
    if (strcmp(r->stable, disabled[i]) == 0 || strcmp(r->name, disabled[i]) == 0)
      return 1;
  return 0;
}

void trw__registry_disable(const char *list)
{
  if (!list)
    return;
  char *copy = trw__strdup(list);
  if (!copy)
    return;
  pthread_mutex_lock(&lock);
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ')
      tok++;
    size_t n = strlen(tok);
    while (n && tok[n - 1] == ' ')
      tok[--n] = '\0';
    if (n && ndisabled < MAX_DISABLED)
      disabled[ndisabled++] = trw__strdup(tok);
  }
  for (size_t i = 0; i < nentries; i++)
    entries[i]->disabled = is_disabled(entries[i]);
  generation++;
  pthread_mutex_unlock(&lock);
  free(copy);
}

void trw__registry_warn_unmatched_disables(void)
{
  for (size_t d = 0; d < ndisabled; d++) {
    int matched = 0;
    for (size_t i = 0; i < nentries && !matched; i++)
      matched = strcmp(entries[i]->stable, disabled[d]) == 0 ||
                strcmp(entries[i]->name, disabled[d]) == 0;
    if (!matched && disabled[d])
      trw__log(TRW__LOG_WARN,
               "TORCHRW_DISABLE names '%s', but no rewriter has that name "
               "(see 'torchrw list')",
               disabled[d]);
  }
}

void trw__registry_reset(void)
{
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < nentries; i++)
    free_entry(entries[i]);
  free(entries);
  entries = NULL;
  nentries = capentries = 0;
  active = 0;
  generation++;
  for (size_t i = 0; i < ndisabled; i++)
    free(disabled[i]);
  ndisabled = 0;
  pthread_mutex_unlock(&lock);
  trw__registry_clear_errors();
}
