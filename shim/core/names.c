/* names.c - backend spellings and rewriter names. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "backends.h"
#include "core.h"

/* The backends' facts live in one table (backends.c); these are the
 * questions the rest of torchrw asks of it. */
static char known_text[512];
static pthread_once_t known_once = PTHREAD_ONCE_INIT;

static void build_known(void)
{
  size_t n, used = 0;
  const trw__backend *b = trw__backends(&n);
  for (size_t i = 0; i < n && used < sizeof known_text; i++) {
    int w = snprintf(known_text + used, sizeof known_text - used, "%s%s", i ? ", " : "",
                     b[i].name);
    if (w < 0)
      break;
    used += (size_t)w;
  }
}

const char *trw_known_backends(void)
{
  pthread_once(&known_once, build_known);
  return known_text;
}

static const char *const ir_names[] = {"default", "onnx", "torchscript"};

const char *trw__ir_name(trw_ir ir)
{
  return (unsigned)ir < sizeof ir_names / sizeof ir_names[0] ? ir_names[ir] : "?";
}

int trw__ir_parse(const char *name, trw_ir *ir)
{
  *ir = TRW_IR_ANY;
  if (!name || !*name)
    return 0;
  for (size_t i = 0; i < sizeof ir_names / sizeof ir_names[0]; i++)
    if (strcmp(name, ir_names[i]) == 0) {
      *ir = (trw_ir)i;
      return 0;
    }
  return TRW_EINVAL;
}

int trw__backend_index(const char *backend)
{
  const trw__backend *b = trw__backend_find(backend);
  return b ? (int)(b - trw__backends(NULL)) : -1;
}

int trw__backend_reads_external_data(const char *backend)
{
  const trw__backend *b = trw__backend_find(backend);
  return !b || b->reads_external_data;
}

const char *trw__backend_canonical(const char *backend)
{
  const trw__backend *b = trw__backend_find(backend);
  return b ? b->name : NULL;
}

int trw__name_valid(const char *name)
{
  if (!name || !*name)
    return 0;
  for (const char *p = name; *p; p++)
    if (isspace((unsigned char)*p) || !isprint((unsigned char)*p))
      return 0;
  return 1;
}

static int is_ident(const char *s, size_t n)
{
  if (n == 0 || isdigit((unsigned char)s[0]))
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '_')
      return 0;
  return 1;
}

/* Nonzero for a dotted path of identifiers ("pkg.mod.Class.method"). */
static int is_dotted(const char *s)
{
  const char *seg = s;
  for (const char *p = s;; p++) {
    if (*p == '.' || *p == '\0') {
      if (!is_ident(seg, (size_t)(p - seg)))
        return 0;
      if (*p == '\0')
        return 1;
      seg = p + 1;
    }
  }
}

static int emit_op(const char *base, size_t n, const char *overload, char *op,
                   size_t oplen)
{
  int w = overload ? snprintf(op, oplen, "aten::%.*s.%s", (int)n, base, overload)
                   : snprintf(op, oplen, "aten::%.*s", (int)n, base);
  return (w < 0 || (size_t)w >= oplen) ? TRW_ENAME : 0;
}

int trw__name_to_op(const char *name, char *op, size_t oplen)
{
  if (!trw__name_valid(name))
    return TRW_ENAME;
  if (strncmp(name, "aten::", 6) == 0) {
    const char *base = name + 6;
    const char *dot = strchr(base, '.');
    size_t n = dot ? (size_t)(dot - base) : strlen(base);
    if (!is_ident(base, n))
      return TRW_ENAME;
    if (dot && !is_ident(dot + 1, strlen(dot + 1)))
      return TRW_ENAME;
    return emit_op(base, n, dot ? dot + 1 : NULL, op, oplen);
  }
  if (!is_dotted(name))
    return TRW_ENAME;
  const char *rest = NULL;
  if (strncmp(name, "torch.Tensor.", 13) == 0)
    rest = name + 13;
  else if (strncmp(name, "torch.", 6) == 0)
    rest = name + 6;
  /* One identifier after the prefix, and not a dunder: that is an operator.
   * Anything deeper (torch.nn.functional.interpolate) is Python. */
  if (rest && !strchr(rest, '.') && strncmp(rest, "__", 2) != 0)
    return emit_op(rest, strlen(rest), NULL, op, oplen);
  return 1;
}
