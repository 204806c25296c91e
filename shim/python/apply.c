/*
 * apply.c - the Python side of a trace's scope: user rewriter modules
 * (TORCHRW_PYTHON) and the Python rewriters applied for a trace.
 */
#include <pthread.h>
#include <string.h>

#include "glue.h"
#include "../torch/bridge.h"

/* ------------------------------------------------------------------------ */
/* What activation asks of Python                                            */

int trw__py_import_modules(const char *list, char *err, size_t errlen, int *interrupted)
{
  if (interrupted)
    *interrupted = 0;
  if (!Py_IsInitialized())
    return 0;
  PyGILState_STATE gil = PyGILState_Ensure();
  int rc = 0;
  PyObject *m = trw__py_module(); /* so that `import torchrw` finds us */
  if (!m) {
    trw__py_describe_error(err, errlen, 1);
    PyGILState_Release(gil);
    return TRW_EPYTHON;
  }
  Py_DECREF(m);
  if (!list || !*list) {
    PyGILState_Release(gil);
    return 0;
  }
  char *copy = trw__strdup(list);
  char *save = NULL;
  for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; rc == 0 && tok;
       tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ')
      tok++;
    size_t n = strlen(tok);
    while (n && tok[n - 1] == ' ')
      tok[--n] = '\0';
    if (!n)
      continue;
    PyObject *mod;
    if (n > 3 && strcmp(tok + n - 3, ".py") == 0) {
      /* A file: import it under its own stem, as runpy would not keep it. */
      PyObject *util = PyImport_ImportModule("importlib.util");
      const char *slash = strrchr(tok, '/');
      PyObject *stem = PyUnicode_FromStringAndSize(slash ? slash + 1 : tok,
                                                   (Py_ssize_t)(tok + n - 3 - (slash ? slash + 1 : tok)));
      PyObject *spec = util && stem ? PyObject_CallMethod(util, "spec_from_file_location", "Os",
                                                          stem, tok)
                                    : NULL;
      mod = spec && spec != Py_None ? PyObject_CallMethod(util, "module_from_spec", "O", spec) : NULL;
      if (spec == Py_None)
        PyErr_Format(PyExc_ImportError, "cannot import %s", tok);
      PyObject *loader = mod ? PyObject_GetAttrString(spec, "loader") : NULL;
      if (mod && loader && PyDict_SetItem(PyImport_GetModuleDict(), stem, mod) == 0) {
        PyObject *r = PyObject_CallMethod(loader, "exec_module", "O", mod);
        if (!r)
          Py_CLEAR(mod);
        Py_XDECREF(r);
      } else {
        Py_CLEAR(mod);
      }
      Py_XDECREF(loader);
      Py_XDECREF(spec);
      Py_XDECREF(stem);
      Py_XDECREF(util);
    } else {
      mod = PyImport_ImportModule(tok);
    }
    if (!mod && interrupted && !PyErr_ExceptionMatches(PyExc_Exception)) {
      /* Ctrl-C (or sys.exit) while it imports: the export's to raise. */
      *interrupted = 1;
      rc = TRW_EPYTHON;
      break;
    }
    if (!mod) {
      char tb[6000];
      trw__py_describe_error(tb, sizeof tb, 1);
      trw__fmt(err, errlen, "torchrw: cannot import rewriter module %s (TORCHRW_PYTHON):\n%s",
               tok, tb);
      rc = TRW_EPYTHON;
    }
    Py_XDECREF(mod);
  }
  free(copy);
  PyGILState_Release(gil);
  return rc;
}

/* Threads tracing at once share one set of patches (they are attributes
 * of classes and modules): the first to start applies them, the last to
 * end removes them, and each replacement rewrites only on a thread that is
 * tracing (trw__rewriting_here).  The GIL guards the count; applying and
 * removing run Python, which lets other threads run, so a thread that
 * starts or ends meanwhile waits (without the GIL) until the patches are
 * all in place, or all gone: it never traces with half of them, nor
 * applies them while they are being removed. */
static int py_users;
static int py_applying;
static pthread_t py_applier;
static pthread_mutex_t py_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t py_applied = PTHREAD_COND_INITIALIZER;

static void wait_for_applier(void)
{
  PyThreadState *ts = PyEval_SaveThread();
  pthread_mutex_lock(&py_lock);
  while (py_applying)
    pthread_cond_wait(&py_applied, &py_lock);
  pthread_mutex_unlock(&py_lock);
  PyEval_RestoreThread(ts);
}

/* A fork child starts with no patches, whichever thread forked and
 * whatever the others were doing: the parent's traces are not the
 * child's, and nothing would ever remove them there.  (os.fork calls this
 * in the child, with the GIL; the core has reset the forking thread's
 * counters already.)  The frames of a trace the child inherited leave
 * through the counters' guards; its own exports apply the patches again. */
static PyObject *after_fork_child(PyObject *self, PyObject *unused)
{
  (void)self;
  (void)unused;
  pthread_mutex_init(&py_lock, NULL);
  pthread_cond_init(&py_applied, NULL);
  py_applying = 0;
  py_users = 0;
  trw__bridge_end(); /* the forking thread's operator kernels, if it traced */
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  trw__py_forget_deferred(TRW__PY_UNTIL_TRACE);
  trw__py_unpatch_modules();
  trw__py_unpatch_functions();
  PyErr_Restore(type, value, tb);
  trw__log(TRW__LOG_DEBUG, "fork child: the Python patches are removed");
  Py_RETURN_NONE;
}

static PyMethodDef after_fork_def = {"torchrw_after_fork_child", after_fork_child, METH_NOARGS,
                                     "Removes torchrw's Python patches in a fork child."};

/* os.register_at_fork(after_in_child=...), once, before any patch. */
static int watch_forks(void)
{
  static int done;
  if (done)
    return 0;
  PyObject *fn = PyCFunction_New(&after_fork_def, NULL);
  PyObject *os = fn ? PyImport_ImportModule("os") : NULL;
  PyObject *reg = os ? PyObject_GetAttrString(os, "register_at_fork") : NULL;
  PyObject *args = reg ? PyTuple_New(0) : NULL;
  PyObject *kw = args ? Py_BuildValue("{s:O}", "after_in_child", fn) : NULL;
  PyObject *r = kw ? PyObject_Call(reg, args, kw) : NULL;
  done = r != NULL;
  Py_XDECREF(r);
  Py_XDECREF(kw);
  Py_XDECREF(args);
  Py_XDECREF(reg);
  Py_XDECREF(os);
  Py_XDECREF(fn);
  return done ? 0 : -1;
}

int trw__py_begin(const trw_env *env, int install_symbolics, char *err, size_t errlen)
{
  PyGILState_STATE gil = PyGILState_Ensure();
  while (py_applying && !pthread_equal(py_applier, pthread_self()))
    wait_for_applier();
  if (py_users > 0 || py_applying) { /* applied, or applying on this very thread */
    py_users++;
    PyGILState_Release(gil);
    return 0;
  }
  py_applying = 1;
  py_applier = pthread_self();
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  int rc = 0;
  PyObject *m = trw__py_module();
  Py_XDECREF(m);
  if (!m || watch_forks() != 0 || (install_symbolics && trw__py_install_symbolics(env) != 0) ||
      trw__py_patch_functions(env) != 0 || trw__py_patch_modules(env) != 0) {
    char why[4000];
    trw__py_describe_error(why, sizeof why, 0);
    trw__fmt(err, errlen, "torchrw: cannot apply the Python rewriters: %s", why);
    trw__py_drop_deferred(TRW__PY_UNTIL_TRACE);
    trw__py_unpatch_modules();
    trw__py_unpatch_functions();
    rc = TRW_EPYTHON;
  }
  /* Begins nested on this thread (an import while applying) counted themselves. */
  py_users += rc == 0 ? 1 : 0;
  PyErr_Restore(type, value, tb);
  pthread_mutex_lock(&py_lock);
  py_applying = 0;
  pthread_cond_broadcast(&py_applied);
  pthread_mutex_unlock(&py_lock);
  PyGILState_Release(gil);
  return rc;
}

void trw__py_end(void)
{
  PyGILState_STATE gil = PyGILState_Ensure();
  /* An exception of the export may be pending (RewriterContext's hooks
   * end the scope from Python): giving things back must not lose it. */
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  while (py_applying && !pthread_equal(py_applier, pthread_self()))
    wait_for_applier();
  if (py_users > 0 && --py_users == 0) {
    py_applying = 1;
    py_applier = pthread_self();
    trw__py_drop_deferred(TRW__PY_UNTIL_TRACE);
    trw__py_unpatch_modules();
    trw__py_unpatch_functions();
    pthread_mutex_lock(&py_lock);
    py_applying = 0;
    pthread_cond_broadcast(&py_applied);
    pthread_mutex_unlock(&py_lock);
  }
  PyErr_Restore(type, value, tb);
  PyGILState_Release(gil);
}
