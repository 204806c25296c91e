/* runtime.c - reads the environment once, and brackets each trace. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "../torch/bridge.h"
#include "runtime.h"

#include <torch/version.h>

static struct {
  int initialized;
  char fatal[2048]; /* kept and raised at every export */
  trw_cfg *cfg;
  trw_env env;
  int warned_disables;
} rt;

static void set_fatal(const char *fmt, const char *a, const char *b)
{
  if (!rt.fatal[0])
    trw__fmt(rt.fatal, sizeof rt.fatal, fmt, a, b);
}

/* Loads one plugin; its refused registrations make it a broken plugin. */
static void load_plugin(const char *path)
{
  size_t before = trw__registry_error_count();
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    set_fatal("torchrw: cannot load plugin %s (TORCHRW_PLUGINS): %s", path,
              why ? why : "unknown error");
    return;
  }
  if (trw__registry_error_count() > before)
    set_fatal("torchrw: plugin %s: %s", path, trw__registry_error(before));
  trw__log(TRW__LOG_DEBUG, "loaded plugin %s", path);
}

static void load_plugins(const char *list)
{
  if (!list || !*list)
    return;
  char *copy = trw__strdup(list);
  if (!copy)
    return;
  char *save = NULL;
  for (char *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save))
    if (*p)
      load_plugin(p);
  free(copy);
}

static void init_once(void)
{
  rt.initialized = 1;
  trw__log_init();

  /* Built-in registrations run in this library's constructors; a refusal
   * there is a torchrw bug, but still one the user must see. */
  if (trw__registry_error_count() > 0)
    set_fatal("torchrw: %s%s", trw__registry_error(0), "");

  const char *b = getenv("TORCHRW_BACKEND");
  const char *backend = trw__backend_canonical(b);
  if (!backend)
    set_fatal("torchrw: TORCHRW_BACKEND=%s is not a known backend (known: %s)",
              b ? b : "", trw_known_backends());
  rt.env.backend = backend ? backend : "default";
  rt.env.torch_major = TORCH_VERSION_MAJOR;
  rt.env.torch_minor = TORCH_VERSION_MINOR;

  const char *cfg_path = getenv("TORCHRW_CONFIG");
  if (cfg_path && *cfg_path) {
    char err[1024];
    if (trw__cfg_load(cfg_path, &rt.cfg, err, sizeof err) != 0)
      set_fatal("torchrw: %s%s", err, "");
  }
  rt.env.cfg = rt.cfg;
  const char *cfg_backend = trw_cfg_get_string(rt.cfg, "backend_config.type", NULL);
  if (backend && cfg_backend && strcmp(cfg_backend, backend) != 0)
    trw__log(TRW__LOG_WARN,
             "TORCHRW_BACKEND=%s but %s says backend_config.type=%s; "
             "rewriting for %s",
             backend, cfg_path, cfg_backend, backend);

  trw__registry_disable(getenv("TORCHRW_DISABLE"));
  load_plugins(getenv("TORCHRW_PLUGINS"));
}

int trw__activate(char *err, size_t errlen)
{
  if (!rt.initialized)
    init_once();
  if (rt.fatal[0]) {
    trw__fmt(err, errlen, "%s", rt.fatal);
    return TRW_ECONFIG;
  }
  if (!rt.warned_disables) {
    trw__registry_warn_unmatched_disables();
    rt.warned_disables = 1;
  }

  trw_ir ir = TRW_IR_TORCHSCRIPT;
  int opset = 0;
  if (trw__py_export_info(&ir, &opset) != 0)
    trw__log(TRW__LOG_DEBUG, "cannot tell the export's IR; assuming torchscript");
  if (ir == TRW_IR_ONNX && opset == 0)
    opset = (int)trw_cfg_get_int(rt.cfg, "onnx_config.opset_version", 0);
  rt.env.ir = ir;
  rt.env.opset = opset;

  trw__registry_set_active(1);
  trw__report_begin(&rt.env);
  int rc = trw__bridge_begin(&rt.env, err, errlen);
  if (rc != 0) {
    trw__report_end();
    trw__registry_set_active(0);
  }
  return rc;
}

void trw__deactivate(void)
{
  trw__bridge_end();
  trw__registry_set_active(0);
  trw__report_end();
}

const trw_env *trw__runtime_env(void) { return &rt.env; }
