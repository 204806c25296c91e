/* runtime.c - reads the environment once, and brackets each trace. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../adapter/adapter.h"
#include "../core/status_wire.h"
#include "../python/glue.h"
#include "../torch/bridge.h"
#include "runtime.h"

static struct {
  int initialized;
  /* Problems that fail every export: plugins, Python modules, refused
   * registrations.  env_fatal only concerns the environment's mode. */
  char load_fatal[8192];
  char env_fatal[2048];
  trw_cfg *cfg; /* TORCHRW_CONFIG */
  trw_env env;
  int explicit_mode; /* a RewriterContext is active */
  trw_cfg *xcfg;
  trw_env xenv;
  int warned_disables;
} rt;

static void keep(char *slot, size_t len, const char *msg)
{
  if (!slot[0])
    trw__fmt(slot, len, "%s", msg);
}

/*
 * A plugin's constructors run inside dlopen.  One that crashes or exits
 * takes the process with it; before it goes, stderr gets one line naming
 * the plugin.  The handlers are in place only while dlopen runs, and give
 * the signal back to what was there before.
 */
static const char *volatile loading; /* the plugin whose dlopen runs */
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
#define NFATAL (sizeof fatal_signals / sizeof fatal_signals[0])
static struct sigaction before_loading[NFATAL];

/* Async-signal-safe: write(2) only. */
static void say_died(const char *how)
{
  const char *name = loading;
  if (!name)
    return;
  loading = NULL;
  const char *parts[] = {"torchrw: error: plugin ", name, how, " (TORCHRW_PLUGINS)\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t len = strlen(parts[i]);
    while (len > 0) {
      ssize_t n = write(2, parts[i], len);
      if (n <= 0)
        break;
      parts[i] += n;
      len -= (size_t)n;
    }
  }
}

static void died_loading(int sig)
{
  say_died(" crashed while loading (a signal in its constructor)");
  for (size_t i = 0; i < NFATAL; i++)
    if (fatal_signals[i] == sig)
      sigaction(sig, &before_loading[i], NULL);
  raise(sig); /* delivered when this handler returns */
}

static void exited_loading(void) { say_died(" exited the process while loading (in its constructor)"); }

static void *dlopen_plugin(const char *path)
{
  static int registered;
  if (!registered)
    registered = atexit(exited_loading) == 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = died_loading;
  sigemptyset(&sa.sa_mask);
  loading = path;
  for (size_t i = 0; i < NFATAL; i++)
    sigaction(fatal_signals[i], &sa, &before_loading[i]);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  for (size_t i = 0; i < NFATAL; i++)
    sigaction(fatal_signals[i], &before_loading[i], NULL);
  loading = NULL;
  return h;
}

/* Loads one plugin; its refused registrations make it a broken plugin, and
 * one that registers nothing is worth a warning. */
static void load_plugin(const char *path)
{
  char msg[2048];
  size_t before = trw__registry_error_count();
  uint64_t generation = trw__registry_generation();
  void *h = dlopen_plugin(path);
  if (!h) {
    const char *why = dlerror();
    trw__fmt(msg, sizeof msg, "torchrw: cannot load plugin %s (TORCHRW_PLUGINS): %s", path,
             why ? why : "unknown error");
    keep(rt.load_fatal, sizeof rt.load_fatal, msg);
    return;
  }
  if (trw__registry_error_count() > before) {
    trw__fmt(msg, sizeof msg, "torchrw: plugin %s: %s", path, trw__registry_error(before));
    keep(rt.load_fatal, sizeof rt.load_fatal, msg);
  } else if (trw__registry_generation() == generation) {
    trw__log(TRW__LOG_WARN, "plugin %s registered no rewriter (TORCHRW_PLUGINS; loaded "
             "twice, or not built with TRW_*_REWRITER?)", path);
  }
  trw__log(TRW__LOG_DEBUG, "loaded plugin %s", path);
}

static void load_plugins(const char *list)
{
  if (!list || !*list)
    return;
  /* Plugins resolve trw_register & co. against this library, which Python
   * loaded RTLD_LOCAL when it came in as `import torchrw`: make it global. */
  Dl_info self;
  if (dladdr((void *)load_plugins, &self) && self.dli_fname &&
      !dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL))
    trw__log(TRW__LOG_WARN, "cannot make %s global for plugins: %s", self.dli_fname, dlerror());
  char *copy = trw__strdup(list);
  if (!copy)
    return;
  char *save = NULL;
  for (char *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save))
    if (*p)
      load_plugin(p);
  free(copy);
}

static void flush_at_exit(void) { trw__report_flush(); }

/* What the environment says, once per process. */
static void init_environment(void)
{
  char msg[2048];
  atexit(flush_at_exit);
  trw__log_init();
  const trw__adapter *a = trw__adapter_get();
  rt.env.torch_major = rt.xenv.torch_major = a->major;
  rt.env.torch_minor = rt.xenv.torch_minor = a->minor;

  /* The preloaded shim picks the runtime by torch's version, and
   * `import torchrw` does too; this catches a runtime reached otherwise. */
  if (trw__runtime_check_torch(msg, sizeof msg) != 0)
    keep(rt.load_fatal, sizeof rt.load_fatal, msg);

  /* Built-in registrations run in this library's constructors; a refusal
   * there is a torchrw bug, but still one the user must see. */
  if (trw__registry_error_count() > 0) {
    trw__fmt(msg, sizeof msg, "torchrw: %s", trw__registry_error(0));
    keep(rt.load_fatal, sizeof rt.load_fatal, msg);
  }

  const char *b = getenv("TORCHRW_BACKEND");
  const trw__backend *info = NULL;
  const char *version = NULL, *backend = NULL;
  char why[768];
  if (trw__backend_parse(b, &info, &version, why, sizeof why) != 0) {
    trw__fmt(msg, sizeof msg, "torchrw: TORCHRW_BACKEND: %s", why);
    keep(rt.env_fatal, sizeof rt.env_fatal, msg);
  } else {
    backend = info->name;
  }
  rt.env.backend = backend ? backend : "default";
  rt.env.version = version;

  const char *cfg_path = getenv("TORCHRW_CONFIG");
  if (cfg_path && *cfg_path) {
    char err[1024];
    if (trw__cfg_load(cfg_path, &rt.cfg, err, sizeof err) != 0) {
      trw__fmt(msg, sizeof msg, "torchrw: %s", err);
      keep(rt.env_fatal, sizeof rt.env_fatal, msg);
    }
  }
  rt.env.cfg = rt.cfg;
  const char *cfg_backend = trw_cfg_get_string(rt.cfg, "backend_config.type", NULL);
  if (backend && cfg_backend && strcmp(cfg_backend, backend) != 0)
    trw__log(TRW__LOG_WARN,
             "TORCHRW_BACKEND=%s but %s says backend_config.type=%s; rewriting for %s",
             backend, cfg_path, cfg_backend, backend);

  trw__registry_disable(getenv("TORCHRW_DISABLE"));
  /* The torchrw module first (its built-ins), then plugins, then user
   * modules: later registrations replace earlier ones. */
  char err[8192];
  if (trw__py_import_modules(NULL, err, sizeof err, NULL) != 0)
    keep(rt.load_fatal, sizeof rt.load_fatal, err);
  load_plugins(getenv("TORCHRW_PLUGINS"));
}

/*
 * The first activation loads everything (init_environment, then the
 * TORCHRW_PYTHON modules) exactly once, whatever the number of threads
 * whose first traces start together: the others wait, without the GIL,
 * until it is done, and then trace with the rewriters.  An interrupt
 * (KeyboardInterrupt, SystemExit) while the modules import is the
 * export's, not a load failure: it stays raised, and the next activation
 * imports them again.  Returns 0, or 1 when interrupted (the Python
 * exception is set).
 */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t init_changed = PTHREAD_COND_INITIALIZER;
static enum { INIT_NONE, INIT_RUNNING, INIT_DONE } init_state;
static int environment_read;
static pthread_t init_owner;

static int init_once(void)
{
  pthread_mutex_lock(&init_lock);
  while (init_state == INIT_RUNNING && !pthread_equal(init_owner, pthread_self())) {
    int gil = Py_IsInitialized() && PyGILState_Check();
    PyThreadState *ts = gil ? PyEval_SaveThread() : NULL;
    pthread_cond_wait(&init_changed, &init_lock);
    pthread_mutex_unlock(&init_lock);
    if (ts)
      PyEval_RestoreThread(ts); /* never with init_lock held: the owner needs the GIL */
    pthread_mutex_lock(&init_lock);
  }
  if (init_state != INIT_NONE) { /* done, or this thread's own load re-entered */
    pthread_mutex_unlock(&init_lock);
    return 0;
  }
  init_state = INIT_RUNNING;
  init_owner = pthread_self();
  pthread_mutex_unlock(&init_lock);

  if (!environment_read) {
    environment_read = 1;
    init_environment();
  }
  char err[8192];
  int interrupted = 0;
  int rc = trw__py_import_modules(getenv("TORCHRW_PYTHON"), err, sizeof err, &interrupted);
  if (rc != 0 && !interrupted)
    keep(rt.load_fatal, sizeof rt.load_fatal, err);

  pthread_mutex_lock(&init_lock);
  init_state = interrupted ? INIT_NONE : INIT_DONE;
  rt.initialized = init_state == INIT_DONE;
  pthread_cond_broadcast(&init_changed);
  pthread_mutex_unlock(&init_lock);
  return interrupted;
}

/* What an interrupted load says; the Python exception stays raised. */
static int interrupted(char *err, size_t errlen)
{
  trw__fmt(err, errlen, "torchrw: interrupted while the rewriter modules imported "
                        "(TORCHRW_PYTHON); the next export imports them again");
  return TRW_EPYTHON;
}

int trw__runtime_load(char *err, size_t errlen)
{
  return !rt.initialized && init_once() ? interrupted(err, errlen) : 0;
}

int trw__runtime_prepare(char *err, size_t errlen)
{
  if (!rt.initialized && init_once())
    return interrupted(err, errlen);
  if (rt.load_fatal[0] || rt.env_fatal[0]) {
    trw__fmt(err, errlen, "%s", rt.load_fatal[0] ? rt.load_fatal : rt.env_fatal);
    return TRW_ECONFIG;
  }
  return 0;
}

int trw__runtime_push_mode(const char *backend, const char *cfg, int cfg_is_path,
                           const char *ir, int opset, char *err, size_t errlen)
{
  if (!rt.initialized && init_once())
    return interrupted(err, errlen);
  if (rt.load_fatal[0]) {
    trw__fmt(err, errlen, "%s", rt.load_fatal);
    return TRW_ECONFIG;
  }
  trw_cfg *c = NULL;
  char why[1024];
  int rc = cfg_is_path ? trw__cfg_load(cfg, &c, why, sizeof why)
                       : trw__cfg_parse(cfg, strlen(cfg), "RewriterContext cfg", &c, why,
                                        sizeof why);
  if (rc != 0) {
    trw__fmt(err, errlen, "torchrw: %s", why);
    return TRW_ECONFIG;
  }
  /* As mmdeploy: the cfg's backend_config.type, else the default backend. */
  if (!backend)
    backend = trw_cfg_get_string(c, "backend_config.type", "default");
  const trw__backend *info = NULL;
  const char *version = NULL;
  if (trw__backend_parse(backend, &info, &version, why, sizeof why) != 0) {
    trw__fmt(err, errlen, "torchrw: %s", why);
    trw__cfg_free(c);
    return TRW_EBACKEND;
  }
  const char *canon = info->name;
  trw_ir xir;
  if (trw__ir_parse(ir, &xir) != 0) {
    trw__fmt(err, errlen, "torchrw: ir='%s' is not 'onnx', 'torchscript' or 'default'", ir);
    trw__cfg_free(c);
    return TRW_EINVAL;
  }
  if (xir == TRW_IR_ANY) /* a trace is of one IR: the default is ONNX's */
    xir = TRW_IR_ONNX;
  rt.xcfg = c;
  rt.xenv.backend = canon;
  rt.xenv.version = version;
  rt.xenv.cfg = c;
  rt.xenv.ir = xir;
  rt.xenv.opset = opset ? opset : (int)trw_cfg_get_int(c, "onnx_config.opset_version", 0);
  rt.explicit_mode = 1;
  return 0;
}

void trw__runtime_pop_mode(void)
{
  if (!rt.explicit_mode)
    return;
  trw__report_flush();
  rt.explicit_mode = 0;
  rt.xenv.cfg = NULL;
  trw__cfg_free(rt.xcfg);
  rt.xcfg = NULL;
}

/* What the hook about to start the activation knows (trw__runtime_expect). */
static __thread struct {
  int set;
  trw_ir ir;
  int opset;
  trw_exporter exporter;
} expected;

void trw__runtime_expect(trw_ir ir, int opset, trw_exporter exporter)
{
  expected.set = 1;
  expected.ir = ir;
  expected.opset = opset;
  expected.exporter = exporter;
}

/* The environment of this thread's export: the mode's (the TORCHRW_*
 * variables', or a RewriterContext block's) with what the activation
 * learnt of the export (IR, opset, exporter).  Per thread, from activation
 * to the export's end: threads tracing side by side each see their own. */
static __thread trw_env thread_env;
static __thread int thread_env_set;

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int trw__activate(char *err, size_t errlen)
{
  double t0 = now_ms();
  if (!rt.initialized && init_once())
    return interrupted(err, errlen);
  double t_init = now_ms();
  if (rt.load_fatal[0] || (!rt.explicit_mode && rt.env_fatal[0])) {
    trw__fmt(err, errlen, "%s", rt.load_fatal[0] ? rt.load_fatal : rt.env_fatal);
    return TRW_ECONFIG;
  }
  if (!rt.warned_disables) {
    trw__registry_warn_unmatched_disables();
    rt.warned_disables = 1;
  }
  thread_env = rt.explicit_mode ? rt.xenv : rt.env;
  thread_env_set = 1;
  trw_env *env = &thread_env;

  trw_ir ir = TRW_IR_TORCHSCRIPT;
  int opset = 0;
  trw_exporter exporter = TRW_EXPORTER_TORCHSCRIPT;
  if (expected.set) {
    ir = expected.ir;
    opset = expected.opset;
    exporter = expected.exporter;
    expected.set = 0;
  } else if (trw__runtime_export_info(&ir, &opset) != 0) {
    trw__log(TRW__LOG_DEBUG, "cannot tell the export's IR; assuming torchscript");
  }
  if (ir == TRW_IR_ONNX && opset == 0)
    opset = rt.explicit_mode && rt.xenv.opset
                ? rt.xenv.opset
                : (int)trw_cfg_get_int(env->cfg, "onnx_config.opset_version", 0);
  env->ir = ir;
  env->opset = opset;
  env->exporter = exporter;

  trw__registry_set_active(1);
  trw__report_begin(env);
  trw__bridge_options opts = {trw__trace_stream(), trw__py_where};
  double t_info = now_ms();
  int rc = trw__bridge_begin(env, &opts, err, errlen);
  double t_bridge = now_ms();
  if (rc == 0) {
    rc = trw__py_begin(env, !rt.explicit_mode, err, errlen);
    if (rc != 0)
      trw__bridge_end();
  }
  if (rc != 0) {
    trw__registry_set_active(0);
    thread_env_set = 0;
  } else {
    trw__status_phase(TRW__PHASE_TRACING);
  }
  trw__log(TRW__LOG_DEBUG,
           "activated in %.2f ms: loading %.2f, export info %.2f, operator kernels %.2f, "
           "Python rewriters %.2f",
           now_ms() - t0, t_init - t0, t_info - t_init, t_bridge - t_info, now_ms() - t_bridge);
  return rc;
}

void trw__deactivate(void)
{
  /* Inside torch.onnx.export the Python rewriters stay until it returns
   * (trw__runtime_export_leave): torch.onnx calls some of their targets
   * after the trace.  The registry stays closed while they may run. */
  int hold = trw__export_depth() > 0;
  if (hold)
    trw__hold_python();
  else
    trw__py_end();
  trw__bridge_end();
  /* The trace's report record stays open for the symbolics that run after
   * it; the export's hook closes it (trw__runtime_export_leave).  A trace
   * outside one (torch.jit.trace, torch.export.export) is over. */
  if (!hold) {
    trw__registry_set_active(0);
    trw__report_flush();
    thread_env_set = 0;
  }
  /* Inside torch.onnx.export, the ONNX conversion follows the trace. */
  trw__status_phase(hold ? TRW__PHASE_CONVERTING : TRW__PHASE_RUNNING);
}

void trw__runtime_export_leave(void)
{
  if (trw__export_leave() > 0)
    return;
  trw__status_phase(TRW__PHASE_RUNNING);
  for (int n = trw__release_python(); n > 0; n--) {
    trw__py_end();
    trw__registry_set_active(0);
  }
  trw__report_flush();
  thread_env_set = 0;
}

FILE *trw__trace_stream(void) { return trw__output_stream(TRW__OUT_TRACE); }

const trw_env *trw__runtime_env(void)
{
  if (thread_env_set)
    return &thread_env;
  return rt.explicit_mode ? &rt.xenv : &rt.env;
}
