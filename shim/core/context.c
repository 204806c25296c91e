/* context.c - what a rewriter and a checker can ask about their call. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

static __thread int tracing, exporting, held;

int trw__tracing_depth(void) { return tracing; }
void trw__tracing_enter(void) { tracing++; }
void trw__tracing_leave(void)
{
  if (tracing > 0)
    tracing--;
}

static int exporting_threads;

void trw__export_enter(void)
{
  if (exporting++ == 0)
    __atomic_add_fetch(&exporting_threads, 1, __ATOMIC_RELAXED);
}

int trw__export_leave(void)
{
  if (exporting == 0)
    return 0;
  if (--exporting == 0)
    __atomic_sub_fetch(&exporting_threads, 1, __ATOMIC_RELAXED);
  return exporting;
}

int trw__export_depth(void) { return exporting; }
int trw__exporting_threads(void) { return __atomic_load_n(&exporting_threads, __ATOMIC_RELAXED); }
void trw__hold_python(void) { held++; }

int trw__release_python(void)
{
  int n = held;
  held = 0;
  return n;
}

int trw__rewriting_here(void) { return tracing > 0 || held > 0; }

/* The child of a fork made inside a trace (a multiprocessing worker
 * started from a model's forward) is not tracing: the trace belongs to the
 * parent, and the child's own exports must start theirs afresh (the
 * threads that exported are not in the child).  The frames it inherited
 * leave through the counters' guards. */
static void leave_in_child(void) { tracing = exporting = held = exporting_threads = 0; }
__attribute__((constructor)) static void at_fork(void) { pthread_atfork(NULL, NULL, leave_in_child); }

const trw_cfg *trw_ctx_cfg(const trw_ctx *ctx)
{
  return ctx && ctx->env ? ctx->env->cfg : NULL;
}

const char *trw_ctx_backend(const trw_ctx *ctx)
{
  return ctx && ctx->env && ctx->env->backend ? ctx->env->backend : "default";
}

const char *trw_ctx_backend_version(const trw_ctx *ctx)
{
  return trw__env_version(ctx ? ctx->env : NULL);
}

trw_ir trw_ctx_ir(const trw_ctx *ctx)
{
  return ctx && ctx->env ? ctx->env->ir : TRW_IR_ANY;
}

int trw_ctx_opset(const trw_ctx *ctx)
{
  return ctx && ctx->env ? ctx->env->opset : 0;
}

const char *trw_ctx_name(const trw_ctx *ctx)
{
  return ctx && ctx->rw ? ctx->rw->stable : "";
}

const char *trw_ctx_file(const trw_ctx *ctx)
{
  return ctx && ctx->rw ? ctx->rw->file : "";
}

int trw_ctx_line(const trw_ctx *ctx) { return ctx && ctx->rw ? ctx->rw->line : 0; }

void *trw_ctx_user_data(const trw_ctx *ctx) { return ctx && ctx->rw ? ctx->rw->user_data : NULL; }

const char *trw_ctx_op(const trw_ctx *ctx)
{
  return ctx && ctx->op ? ctx->op : "";
}

int trw_error(trw_ctx *ctx, int code, const char *fmt, ...)
{
  if (code >= 0)
    code = TRW_EINVAL;
  if (!ctx)
    return code;
  ctx->err[0] = '\0';
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
  }
  ctx->err_code = code;
  return code;
}

static void ctx_log(trw__level level, trw_ctx *ctx, const char *fmt, va_list ap)
{
  if (!trw__log_enabled(level))
    return;
  char msg[1024] = "";
  if (fmt)
    vsnprintf(msg, sizeof msg, fmt, ap);
  trw__log(level, "%s (%s:%d): %s", trw_ctx_name(ctx), trw_ctx_file(ctx),
           trw_ctx_line(ctx), msg);
}

void trw__log_declined(trw_ctx *ctx, const char *original, const char *fmt, va_list ap)
{
  if (!trw__log_enabled(TRW__LOG_INFO))
    return;
  char why[1024] = "";
  if (fmt)
    vsnprintf(why, sizeof why, fmt, ap);
  const char *op = trw_ctx_op(ctx);
  trw__log(TRW__LOG_INFO, "%s (%s:%d) leaves %s to %s: %s", trw_ctx_name(ctx),
           trw_ctx_file(ctx), trw_ctx_line(ctx), op && op[0] ? op : "the call", original, why);
}

void trw_log_warn(trw_ctx *ctx, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  ctx_log(TRW__LOG_WARN, ctx, fmt, ap);
  va_end(ap);
}

void trw_log_info(trw_ctx *ctx, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  ctx_log(TRW__LOG_INFO, ctx, fmt, ap);
  va_end(ap);
}

void trw__ctx_failure(const trw_ctx *ctx, int code, char *buf, size_t len)
{
  const char *why = ctx && ctx->err[0] ? ctx->err : trw_strerror(code);
  /* A failure further in, passed up unchanged: it names its own rewriter. */
  if (strncmp(why, "torchrw: ", 9) == 0) {
    trw__fmt(buf, len, "%s", why);
    return;
  }
  trw__fmt(buf, len, "torchrw: rewriter %s (%s:%d) failed on %s: %s",
           trw_ctx_name(ctx), trw_ctx_file(ctx), trw_ctx_line(ctx),
           trw_ctx_op(ctx)[0] ? trw_ctx_op(ctx) : "its call", why);
}

const char *trw_env_backend(const trw_env *env)
{
  return env && env->backend ? env->backend : "default";
}

const char *trw__env_version(const trw_env *env)
{
  if (env && env->version)
    return env->version;
  const char *v = trw__backend_newest(trw__backend_find(env ? env->backend : NULL));
  return v ? v : "";
}

const char *trw_env_backend_version(const trw_env *env) { return trw__env_version(env); }

trw_ir trw_env_ir(const trw_env *env) { return env ? env->ir : TRW_IR_ANY; }
int trw_env_opset(const trw_env *env) { return env ? env->opset : 0; }
trw_exporter trw_env_exporter(const trw_env *env)
{
  return env ? env->exporter : TRW_EXPORTER_TORCHSCRIPT;
}
trw_exporter trw_ctx_exporter(const trw_ctx *ctx)
{
  return trw_env_exporter(ctx ? ctx->env : NULL);
}
const char *trw_exporter_name(trw_exporter exporter)
{
  return exporter == TRW_EXPORTER_TORCH_EXPORT ? "torch.export" : "torchscript";
}
const trw_cfg *trw_env_cfg(const trw_env *env) { return env ? env->cfg : NULL; }

int trw_env_torch_at_least(const trw_env *env, int major, int minor)
{
  if (!env)
    return 0;
  return env->torch_major > major ||
         (env->torch_major == major && env->torch_minor >= minor);
}
