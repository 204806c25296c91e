/*
 * preload.c - libtorchrw.so, the library users put in LD_PRELOAD.
 *
 * It links neither libtorch nor libpython (preloading it into /bin/true
 * must cost nothing).  It interposes torch::jit::tracer::trace, the C++
 * function that torch.onnx.export and torch.jit.trace reach through the
 * PLT of libtorch_python.so (shim/adapter/trace_entry.h), and hands each
 * trace to the runtime, which turns rewriting on around it.
 *
 * It also interposes initModule, which torch._C's PyInit__C calls to build
 * the module: torch exports through torch.export without calling the
 * tracer (torch.onnx.export's default from 2.9), so the runtime must be in
 * place to bracket those exports before they start.
 *
 * One preloaded library serves every torch.  The runtime is built per
 * torch series and sits beside this file as libtorchrw_runtime-torch<X.Y>.so;
 * when torch is imported (or at the first trace), with libtorch certainly
 * present, the shim asks Python which torch the process has and loads that
 * runtime.  When there is none, every export fails with a RuntimeError
 * that names the torch found, the runtimes there are and the command that
 * builds the missing one.
 *
 * With TORCHRW_BACKEND unset the interposer only forwards the call.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdarg.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../adapter/versions.h"
#include "build_hint.h" /* generated: TRW_BUILD_HINT, with %s for the interpreter */
#include "../adapter/runtime_api.h"

typedef trw__trace_fn trace_fn;

#define EXPORT __attribute__((visibility("default")))

EXPORT void *trw_trace(void *result, void *inputs, void *traced_fn,
                       void *lookup_fn, bool strict, bool force_outplace,
                       void *self, void *argument_names) __asm__(TRW__TRACE_SYMBOL);
EXPORT void *trw_torch_init(void) __asm__(TRW__TORCH_INIT_SYMBOL);

/* Set once by the constructor or the first interposed call. */
static int configured = -1; /* -1 unknown, 0 inert, 1 TORCHRW_BACKEND set */

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static trace_fn original_trace;
static trw__torch_init_fn original_init;
static const trw__runtime_api *runtime;
static int runtime_tried;
/* Why no runtime could be loaded: every export raises this. */
static char failure[4096];

static void read_env(void)
{
  if (configured < 0) {
    const char *b = getenv("TORCHRW_BACKEND");
    configured = (b && *b) ? 1 : 0;
  }
}

/* The directory this library was loaded from, into buf; 0 or -1. */
static int own_dir(char *buf, size_t len)
{
  Dl_info info;
  if (!dladdr((void *)own_dir, &info) || !info.dli_fname)
    return -1;
  const char *slash = strrchr(info.dli_fname, '/');
  if (!slash)
    return snprintf(buf, len, ".") < (int)len ? 0 : -1;
  int n = snprintf(buf, len, "%.*s", (int)(slash - info.dli_fname), info.dli_fname);
  return n > 0 && (size_t)n < len ? 0 : -1;
}

__attribute__((constructor)) static void preload_init(void)
{
  /* Tiny on purpose: every process on the system may run this.  It reads
   * and changes no variable but its own. */
  read_env();
}

/* A child must not inherit a lock held by a thread that does not exist in
 * it; the resolved pointers stay valid across fork. */
static void atfork_child(void)
{
  pthread_mutex_init(&init_lock, NULL);
}

struct find_lib {
  const char *needle;
  char path[4096];
};

static int find_cb(struct dl_phdr_info *info, size_t size, void *data)
{
  (void)size;
  struct find_lib *f = data;
  const char *name = info->dlpi_name;
  const char *base = name ? strrchr(name, '/') : NULL;
  base = base ? base + 1 : name;
  if (base && strncmp(base, f->needle, strlen(f->needle)) == 0) {
    snprintf(f->path, sizeof f->path, "%s", name);
    return 1;
  }
  return 0;
}

/*
 * An original function of libtorch.  Python loads torch's libraries with
 * RTLD_LOCAL, so dlsym(RTLD_NEXT) does not see them: find the loaded
 * library and ask it; RTLD_NEXT is the fallback for other hosts.
 */
static void *resolve_in(const char *library, const char *symbol, void *self)
{
  struct find_lib f = {.needle = library, .path = ""};
  void *sym = NULL;
  if (dl_iterate_phdr(find_cb, &f) && f.path[0]) {
    void *h = dlopen(f.path, RTLD_LAZY | RTLD_NOLOAD);
    if (h) {
      sym = dlsym(h, symbol);
      dlclose(h);
    }
  }
  if (!sym)
    sym = dlsym(RTLD_NEXT, symbol);
  return sym == self ? NULL : sym;
}

/* ---- Which torch ----------------------------------------------------------- */

/*
 * torch.__version__ and sys.executable, asked of the interpreter in the
 * process through the CPython API it exports (this library links no
 * libpython).  The caller of the trace holds the GIL; take it all the same.
 * Returns 0, or -1 when the process has no Python or no torch.
 */
static int python_torch(char *version, size_t vlen, char *exe, size_t elen)
{
  typedef void *obj;
  int (*initialized)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
  int (*ensure)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "PyGILState_Ensure");
  void (*release)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "PyGILState_Release");
  obj (*get_module)(obj) = (obj(*)(obj))dlsym(RTLD_DEFAULT, "PyImport_GetModule");
  obj (*from_string)(const char *) =
      (obj(*)(const char *))dlsym(RTLD_DEFAULT, "PyUnicode_FromString");
  obj (*getattr)(obj, const char *) =
      (obj(*)(obj, const char *))dlsym(RTLD_DEFAULT, "PyObject_GetAttrString");
  obj (*to_str)(obj) = (obj(*)(obj))dlsym(RTLD_DEFAULT, "PyObject_Str");
  const char *(*utf8)(obj) = (const char *(*)(obj))dlsym(RTLD_DEFAULT, "PyUnicode_AsUTF8");
  obj (*sys_get)(const char *) = (obj(*)(const char *))dlsym(RTLD_DEFAULT, "PySys_GetObject");
  void (*decref)(obj) = (void (*)(obj))dlsym(RTLD_DEFAULT, "Py_DecRef");
  void (*clear)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "PyErr_Clear");
  if (!initialized || !ensure || !release || !get_module || !from_string || !getattr ||
      !to_str || !utf8 || !sys_get || !decref || !clear || !initialized())
    return -1;
  int gil = ensure();
  int rc = -1;
  obj name = from_string("torch");
  obj torch = name ? get_module(name) : NULL;
  obj v = torch ? getattr(torch, "__version__") : NULL;
  obj s = v ? to_str(v) : NULL;
  const char *text = s ? utf8(s) : NULL;
  if (text) {
    snprintf(version, vlen, "%s", text);
    rc = 0;
  }
  obj e = sys_get("executable"); /* borrowed */
  const char *etext = e ? utf8(e) : NULL;
  snprintf(exe, elen, "%s", etext && *etext ? etext : "python3");
  if (s)
    decref(s);
  if (v)
    decref(v);
  if (torch)
    decref(torch);
  if (name)
    decref(name);
  clear();
  release(gil);
  return rc;
}

/* "1.13, 2.14": the series of the runtimes in dir. */
static void available(const char *dir, char *out, size_t len)
{
  out[0] = '\0';
  DIR *d = opendir(dir);
  if (!d)
    return;
  size_t used = 0, plen = strlen(TRW__RUNTIME_PREFIX), slen = strlen(TRW__RUNTIME_SUFFIX);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n <= plen + slen || strncmp(e->d_name, TRW__RUNTIME_PREFIX, plen) != 0 ||
        strcmp(e->d_name + n - slen, TRW__RUNTIME_SUFFIX) != 0)
      continue;
    int w = snprintf(out + used, len - used, "%s%.*s", used ? ", " : "", (int)(n - plen - slen),
                     e->d_name + plen);
    if (w < 0 || (size_t)w >= len - used)
      break;
    used += (size_t)w;
  }
  closedir(d);
}

/* ---- Loading the runtime ------------------------------------------------- */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(failure, sizeof failure, fmt, ap);
  va_end(ap);
}

/* The runtime for torch `version` (from Python), or NULL with failure set. */
static const trw__runtime_api *load_runtime(const char *version, const char *exe)
{
  char dir[PATH_MAX];
  if (own_dir(dir, sizeof dir) != 0) {
    fail("torchrw: cannot locate libtorchrw.so itself; rewriting is off");
    return NULL;
  }
  unsigned major, minor;
  if (sscanf(version, "%u.%u", &major, &minor) != 2) {
    fail("torchrw: cannot tell which torch this is (torch.__version__ is '%s')", version);
    return NULL;
  }
  char path[PATH_MAX + 64], have[512], hint[1024];
  snprintf(path, sizeof path, "%s/%s%u.%u%s", dir, TRW__RUNTIME_PREFIX, major, minor,
           TRW__RUNTIME_SUFFIX);
  if (access(path, R_OK) != 0) {
    available(dir, have, sizeof have);
    snprintf(hint, sizeof hint, TRW_BUILD_HINT, exe);
    unsigned omaj, omin, nmaj, nmin;
    int unknown = sscanf(TRW_TORCH_OLDEST "." TRW_TORCH_NEWEST, "%u.%u.%u.%u", &omaj, &omin,
                         &nmaj, &nmin) == 4 &&
                  (major < omaj || (major == omaj && minor < omin) || major > nmaj ||
                   (major == nmaj && minor > nmin));
    if (unknown)
      fail("torchrw: no runtime for torch %s (the torch of %s) in %s, and torchrw knows "
           "torch " TRW_TORCH_OLDEST " to " TRW_TORCH_NEWEST " only: its torch adapter "
           "(shim/adapter) needs this torch's facts first; built there: %s%s",
           version, exe, dir, have[0] ? "torch " : "", have[0] ? have : "none");
    else
      fail("torchrw: no runtime for torch %s (the torch of %s) in %s; built there: %s%s. "
           "Build it: %s",
           version, exe, dir, have[0] ? "torch " : "", have[0] ? have : "none", hint);
    return NULL;
  }
  /* GLOBAL, so that C plugins resolve trw_register against it. */
  void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    fail("torchrw: cannot load the runtime %s: %s", path, dlerror());
    return NULL;
  }
  trw__runtime_api_fn get = (trw__runtime_api_fn)dlsym(h, TRW__RUNTIME_SYMBOL);
  const trw__runtime_api *api = get ? get() : NULL;
  if (!api || api->version != TRW__RUNTIME_API_VERSION) {
    fail("torchrw: %s is not a runtime of this torchrw (libtorchrw.so and the runtime come "
         "from different builds); rebuild torchrw", path);
    return NULL;
  }
  unsigned rmajor, rminor;
  if (!api->torch_version || sscanf(api->torch_version, "%u.%u", &rmajor, &rminor) != 2 ||
      rmajor != major || rminor != minor) {
    fail("torchrw: %s was built for torch %s, but this process has torch %s; rebuild it: "
         "%s", path, api->torch_version ? api->torch_version : "?", version,
         (snprintf(hint, sizeof hint, TRW_BUILD_HINT, exe), hint));
    return NULL;
  }
  return api;
}

static void atfork_once(void)
{
  static int done;
  if (!done) {
    pthread_atfork(NULL, NULL, atfork_child);
    done = 1;
  }
}

/*
 * Loads the runtime for the torch in the process, once.  Python is asked
 * first, outside the lock: a thread holding the GIL may be waiting for the
 * lock.  With no runtime, `failure` says why.
 */
static void load_runtime_once(void)
{
  char version[128] = "", exe[PATH_MAX] = "";
  read_env();
  if (configured != 1 || runtime_tried)
    return;
  int have_torch = python_torch(version, sizeof version, exe, sizeof exe) == 0;
  pthread_mutex_lock(&init_lock);
  atfork_once();
  if (!runtime_tried) {
    runtime_tried = 1;
    if (have_torch)
      runtime = load_runtime(version, exe);
    else
      fail("torchrw: this process traces with libtorch but has no Python torch module; "
           "torchrw rewrites exports run from Python");
  }
  pthread_mutex_unlock(&init_lock);
}

static void init_trace(void)
{
  pthread_mutex_lock(&init_lock);
  atfork_once();
  if (!original_trace)
    original_trace =
        (trace_fn)resolve_in(TRW__TRACE_LIBRARY, TRW__TRACE_SYMBOL, (void *)trw_trace);
  pthread_mutex_unlock(&init_lock);
  load_runtime_once();
}

/* Fails this export with the reason no runtime could be loaded. */
static void raise_failure(void)
{
  static trw__raise_fn raise_fn;
  static int warned;
  if (!raise_fn) {
    char dir[PATH_MAX], path[PATH_MAX + 32];
    if (own_dir(dir, sizeof dir) == 0) {
      snprintf(path, sizeof path, "%s/%s", dir, TRW__RAISE_SONAME);
      void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      raise_fn = h ? (trw__raise_fn)dlsym(h, TRW__RAISE_SYMBOL) : NULL;
    }
  }
  if (raise_fn)
    raise_fn(failure); /* throws */
  if (!warned) {
    warned = 1;
    fprintf(stderr, "%s\ntorchrw: (cannot fail the export: %s is missing; exporting "
                    "without rewriting)\n", failure, TRW__RAISE_SONAME);
  }
}

/*
 * Without a runtime, exports through torch.export never reach the tracer
 * (and raise_failure): make torch.onnx.export and torch.export.export
 * raise the same RuntimeError from Python, once they are imported.  The
 * hook is Python source run through the interpreter's own API.
 */
static void fail_exports_in_python(void)
{
  static const char code[] =
      "def _torchrw_fail_exports(message):\n"
      "    import sys\n"
      "    def failing(original):\n"
      "        def export(*args, **kwargs):\n"
      "            raise RuntimeError(message)\n"
      "        export.__wrapped__ = original\n"
      "        return export\n"
      "    targets = {'torch.onnx': 'export', 'torch.export': 'export'}\n"
      "    class Loader:\n"
      "        def __init__(self, loader): self.loader = loader\n"
      "        def create_module(self, spec): return self.loader.create_module(spec)\n"
      "        def exec_module(self, module):\n"
      "            module.__spec__.loader = module.__loader__ = self.loader\n"
      "            self.loader.exec_module(module)\n"
      "            attr = targets[module.__name__]\n"
      "            setattr(module, attr, failing(getattr(module, attr)))\n"
      "        def __getattr__(self, name): return getattr(self.loader, name)\n"
      "    class Finder:\n"
      "        def find_spec(self, name, path=None, target=None):\n"
      "            if name not in targets: return None\n"
      "            for finder in sys.meta_path:\n"
      "                if finder is self or not hasattr(finder, 'find_spec'): continue\n"
      "                spec = finder.find_spec(name, path, target)\n"
      "                if spec is not None:\n"
      "                    spec.loader = Loader(spec.loader)\n"
      "                    return spec\n"
      "            return None\n"
      "    sys.meta_path.insert(0, Finder())\n";
  int (*ensure)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "PyGILState_Ensure");
  void (*release)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "PyGILState_Release");
  int (*run)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "PyRun_SimpleString");
  if (!ensure || !release || !run)
    return;
  /* The message as a Python string literal: hex escapes, nothing to quote. */
  char call[sizeof code + 4 * sizeof failure + 64], *p = call;
  p += snprintf(p, sizeof call, "%s_torchrw_fail_exports('", code);
  for (const unsigned char *m = (const unsigned char *)failure; *m; m++)
    p += snprintf(p, 5, "\\x%02x", *m);
  snprintf(p, (size_t)(call + sizeof call - p), "')\ndel _torchrw_fail_exports\n");
  int gil = ensure();
  run(call);
  release(gil);
}

/*
 * Appends the build's python directory (../python beside this library,
 * which holds the torchrw package) to sys.path, so that an export script
 * or a rewriter module can `import torchrw` once torch is imported.  No
 * environment variable changes: nothing reaches the process's children.
 * The caller (torch's import) holds the GIL; take it all the same.
 */
static void offer_python_module(void)
{
  typedef void *obj;
  int (*ensure)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "PyGILState_Ensure");
  void (*release)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "PyGILState_Release");
  obj (*sys_get)(const char *) = (obj(*)(const char *))dlsym(RTLD_DEFAULT, "PySys_GetObject");
  obj (*from_string)(const char *) =
      (obj(*)(const char *))dlsym(RTLD_DEFAULT, "PyUnicode_FromString");
  int (*contains)(obj, obj) = (int (*)(obj, obj))dlsym(RTLD_DEFAULT, "PySequence_Contains");
  int (*append)(obj, obj) = (int (*)(obj, obj))dlsym(RTLD_DEFAULT, "PyList_Append");
  void (*decref)(obj) = (void (*)(obj))dlsym(RTLD_DEFAULT, "Py_DecRef");
  void (*clear)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "PyErr_Clear");
  char here[PATH_MAX], rel[PATH_MAX + 16], dir[PATH_MAX];
  if (!ensure || !release || !sys_get || !from_string || !contains || !append || !decref ||
      !clear || own_dir(here, sizeof here) != 0)
    return;
  snprintf(rel, sizeof rel, "%s/../python", here);
  if (!realpath(rel, dir) || access(dir, R_OK | X_OK) != 0)
    return;
  int gil = ensure();
  obj path = sys_get("path"); /* borrowed */
  obj item = path ? from_string(dir) : NULL;
  if (item && contains(path, item) == 0)
    append(path, item);
  if (item)
    decref(item);
  clear();
  release(gil);
}

/* torch._C is being built: torch is being imported. */
void *trw_torch_init(void)
{
  pthread_mutex_lock(&init_lock);
  atfork_once();
  if (!original_init)
    original_init = (trw__torch_init_fn)resolve_in(TRW__TORCH_INIT_LIBRARY,
                                                   TRW__TORCH_INIT_SYMBOL, (void *)trw_torch_init);
  pthread_mutex_unlock(&init_lock);
  if (!original_init) {
    fprintf(stderr, "torchrw: error: initModule not found in libtorch_python; remove "
                    "libtorchrw.so from LD_PRELOAD\n");
    return NULL;
  }
  void *module = original_init();
  read_env();
  if (!module || configured != 1)
    return module;
  offer_python_module();
  load_runtime_once();
  if (runtime)
    runtime->torch_imported();
  else if (failure[0])
    fail_exports_in_python();
  return module;
}

void *trw_trace(void *result, void *inputs, void *traced_fn, void *lookup_fn,
                bool strict, bool force_outplace, void *self,
                void *argument_names)
{
  if (!original_trace || (configured == 1 && !runtime_tried))
    init_trace();
  if (!original_trace) {
    /* Cannot happen with a libtorch we know: the caller resolved this very
     * symbol, which libtorch_cpu defines.  There is no result to return. */
    fprintf(stderr, "torchrw: error: torch::jit::tracer::trace not found in "
                    "libtorch_cpu; remove libtorchrw.so from LD_PRELOAD\n");
    return result;
  }
  if (configured == 1 && !runtime && failure[0])
    raise_failure();
  if (configured != 1 || !runtime)
    return original_trace(result, inputs, traced_fn, lookup_fn, strict,
                          force_outplace, self, argument_names);
  /* The runtime brackets the call and may throw; exceptions pass through
   * this frame, which holds nothing. */
  return runtime->trace(original_trace, result, inputs, traced_fn, lookup_fn,
                        strict, force_outplace, self, argument_names);
}
