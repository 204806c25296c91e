/*
 * fixes.c - what each rewriter fixes: TRW_FIXES declarations, kept for
 * listings (`torchrw list --json`, `torchrw check`).  Nothing here is read
 * while exporting.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "core.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static trw__fix *fixes;
static size_t nfixes, capfixes;

static int refuse(int code, const trw_fixes_def *def, const char *what)
{
  trw__log(TRW__LOG_ERROR, "%s:%d: TRW_FIXES %s", def && def->file ? def->file : "?",
           def ? def->line : 0, what);
  return code;
}

int trw_register_fixes(const trw_fixes_def *def)
{
  if (def && (def->size != sizeof(trw_fixes_def) || def->api_version != TRW_API_VERSION))
    return refuse(TRW_EVERSION, def,
                  "was built for another torchrw API version: rebuild it against this "
                  "torchrw's include/torchrw.h");
  if (!def || !def->name || !def->op || !def->rule || !def->file)
    return refuse(TRW_EINVAL, def, "lacks a rewriter name, an operator, a rule or a site");
  const trw__backend *b;
  const char *versions;
  char why[512];
  if (trw__backend_parse_registration(def->backend, &b, &versions, why, sizeof why) != 0) {
    trw__log(TRW__LOG_ERROR, "%s:%d: TRW_FIXES: %s", def->file, def->line, why);
    return TRW_EBACKEND;
  }
  const char *backend = b->name;
  pthread_mutex_lock(&lock);
  if (nfixes == capfixes) {
    size_t cap = capfixes ? capfixes * 2 : 32;
    trw__fix *grown = realloc(fixes, cap * sizeof *grown);
    if (!grown) {
      pthread_mutex_unlock(&lock);
      return refuse(TRW_ENOMEM, def, "could not be kept: out of memory");
    }
    fixes = grown;
    capfixes = cap;
  }
  fixes[nfixes].name = def->name;
  fixes[nfixes].backend = backend; /* canonical names are static */
  fixes[nfixes].versions = versions; /* inside def->backend, which stays */
  fixes[nfixes].op = def->op;
  fixes[nfixes].rule = def->rule;
  fixes[nfixes].file = def->file;
  fixes[nfixes].line = def->line;
  nfixes++;
  pthread_mutex_unlock(&lock);
  return 0;
}

size_t trw__fixes_count(void)
{
  pthread_mutex_lock(&lock);
  size_t n = nfixes;
  pthread_mutex_unlock(&lock);
  return n;
}

int trw__fixes_get(size_t i, trw__fix *out)
{
  pthread_mutex_lock(&lock);
  int found = i < nfixes;
  if (found)
    *out = fixes[i];
  pthread_mutex_unlock(&lock);
  return found ? 0 : TRW_ERANGE;
}
