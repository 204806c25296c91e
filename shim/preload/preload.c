/*
 * preload.c - libtorchrw.so, the library users put in LD_PRELOAD.
 *
 * It links neither libtorch nor libpython (preloading it into /bin/true
 * must cost nothing).  It interposes torch::jit::tracer::trace, the C++
 * function that torch.onnx.export and torch.jit.trace reach through the
 * PLT of libtorch_python.so, and hands each trace to the runtime, which
 * turns rewriting on around it.  The runtime (libtorchrw_runtime.so, beside this
 * file) is loaded at the first trace, when libtorch is certainly present.
 *
 * With TORCHRW_BACKEND unset the interposer only forwards the call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime_api.h"

/*
 * std::pair<std::shared_ptr<TracingState>, Stack> torch::jit::tracer::trace(
 *     Stack inputs, const std::function<Stack(Stack)>& traced_fn,
 *     std::function<std::string(const Variable&)> var_name_lookup_fn,
 *     bool strict, bool force_outplace, Module* self,
 *     const std::vector<std::string>& argument_names);
 *
 * In the x86-64 and AArch64 C++ ABIs the result is returned through a
 * hidden pointer and the by-value parameters are passed by invisible
 * reference, so every parameter is a pointer or a scalar and a C function
 * with this shape forwards them untouched.
 */
#define TRACE_SYMBOL                                                           \
  "_ZN5torch3jit6tracer5traceESt6vectorIN3c106IValueESaIS4_EERKSt8functionIF" \
  "S6_S6_EES7_IFNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEERKN2at6" \
  "TensorEEEbbPNS0_6ModuleERKS2_ISH_SaISH_EE"

typedef trw__trace_fn trace_fn;

#define EXPORT __attribute__((visibility("default")))

EXPORT void *trw_trace(void *result, void *inputs, void *traced_fn,
                       void *lookup_fn, bool strict, bool force_outplace,
                       void *self, void *argument_names) __asm__(TRACE_SYMBOL);

/* Set once by the constructor or the first interposed call. */
static int configured = -1; /* -1 unknown, 0 inert, 1 TORCHRW_BACKEND set */

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static trace_fn original_trace;
static const trw__runtime_api *runtime;
static int runtime_failed;

static void read_env(void)
{
  if (configured < 0) {
    const char *b = getenv("TORCHRW_BACKEND");
    configured = (b && *b) ? 1 : 0;
  }
}

/*
 * In a Python interpreter with TORCHRW_BACKEND set, appends the build's
 * python directory (../python beside this library, which holds the torchrw
 * extension) to PYTHONPATH, so that an export script or a rewriter module
 * can `import torchrw` before the first trace.  Python reads PYTHONPATH
 * after constructors have run.  Other processes are left alone.
 */
static void offer_python_module(void)
{
  if (!dlsym(RTLD_DEFAULT, "Py_Initialize"))
    return;
  Dl_info info;
  if (!dladdr((void *)offer_python_module, &info) || !info.dli_fname)
    return;
  const char *slash = strrchr(info.dli_fname, '/');
  char rel[4096], dir[PATH_MAX];
  snprintf(rel, sizeof rel, "%.*s/../python", slash ? (int)(slash - info.dli_fname) : 1,
           slash ? info.dli_fname : ".");
  if (!realpath(rel, dir) || access(dir, R_OK | X_OK) != 0)
    return;
  const char *old = getenv("PYTHONPATH");
  if (old && strstr(old, dir))
    return;
  char value[8192];
  int n = old && *old ? snprintf(value, sizeof value, "%s:%s", old, dir)
                      : snprintf(value, sizeof value, "%s", dir);
  if (n > 0 && (size_t)n < sizeof value)
    setenv("PYTHONPATH", value, 1);
}

__attribute__((constructor)) static void preload_init(void)
{
  /* Tiny on purpose: every process on the system may run this. */
  read_env();
  if (configured == 1)
    offer_python_module();
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
 * The original trace.  Python loads libtorch with RTLD_LOCAL, so
 * dlsym(RTLD_NEXT) does not see it: find the loaded libtorch_cpu and ask it.
 */
static trace_fn resolve_original(void)
{
  struct find_lib f = {.needle = "libtorch_cpu.so", .path = ""};
  void *sym = NULL;
  if (dl_iterate_phdr(find_cb, &f) && f.path[0]) {
    void *h = dlopen(f.path, RTLD_LAZY | RTLD_NOLOAD);
    if (h) {
      sym = dlsym(h, TRACE_SYMBOL);
      dlclose(h);
    }
  }
  if (!sym)
    sym = dlsym(RTLD_NEXT, TRACE_SYMBOL);
  if (sym == (void *)trw_trace)
    sym = NULL;
  return (trace_fn)sym;
}

static const trw__runtime_api *load_runtime(void)
{
  Dl_info info;
  if (!dladdr((void *)trw_trace, &info) || !info.dli_fname) {
    fprintf(stderr, "torchrw: error: cannot locate libtorchrw.so itself; "
                    "rewriting is off\n");
    return NULL;
  }
  char path[4096];
  const char *slash = strrchr(info.dli_fname, '/');
  int dirlen = slash ? (int)(slash - info.dli_fname) : 1;
  snprintf(path, sizeof path, "%.*s/%s", dirlen, slash ? info.dli_fname : ".",
           TRW__RUNTIME_SONAME);
  /* GLOBAL, so that C plugins resolve trw_register against it. */
  void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    fprintf(stderr, "torchrw: error: cannot load the runtime %s: %s; "
                    "rewriting is off\n",
            path, dlerror());
    return NULL;
  }
  trw__runtime_api_fn get = (trw__runtime_api_fn)dlsym(h, TRW__RUNTIME_SYMBOL);
  const trw__runtime_api *api = get ? get() : NULL;
  if (!api || api->version != TRW__RUNTIME_API_VERSION) {
    fprintf(stderr, "torchrw: error: %s is not a matching torchrw runtime; "
                    "rewriting is off\n",
            path);
    return NULL;
  }
  return api;
}

static void init_once(void)
{
  pthread_mutex_lock(&init_lock);
  if (!original_trace) {
    static int atfork_done;
    if (!atfork_done) {
      pthread_atfork(NULL, NULL, atfork_child);
      atfork_done = 1;
    }
    original_trace = resolve_original();
  }
  read_env();
  if (configured == 1 && !runtime && !runtime_failed) {
    runtime = load_runtime();
    runtime_failed = runtime == NULL;
  }
  pthread_mutex_unlock(&init_lock);
}

void *trw_trace(void *result, void *inputs, void *traced_fn, void *lookup_fn,
                bool strict, bool force_outplace, void *self,
                void *argument_names)
{
  if (!original_trace || (configured == 1 && !runtime && !runtime_failed))
    init_once();
  if (!original_trace) {
    /* Cannot happen with a libtorch we know: the caller resolved this very
     * symbol, which libtorch_cpu defines.  There is no result to return. */
    fprintf(stderr, "torchrw: error: torch::jit::tracer::trace not found in "
                    "libtorch_cpu; remove libtorchrw.so from LD_PRELOAD\n");
    return result;
  }
  if (configured != 1 || !runtime)
    return original_trace(result, inputs, traced_fn, lookup_fn, strict,
                          force_outplace, self, argument_names);
  /* The runtime brackets the call and may throw; exceptions pass through
   * this frame, which holds nothing. */
  return runtime->trace(original_trace, result, inputs, traced_fn, lookup_fn,
                        strict, force_outplace, self, argument_names);
}
