/*
 * scope.c - the Python side of a trace's scope, user rewriter modules
 * (TORCHRW_PYTHON), and torchrw.RewriterContext for explicit use without
 * preloading.
 */
#include <string.h>

#include "../runtime/runtime.h"
#include "glue.h"

/* ------------------------------------------------------------------------ */
/* What activation asks of Python                                            */

int trw__py_import_modules(const char *list, char *err, size_t errlen)
{
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
 * tracing (trw__scope_depth).  The GIL guards the count. */
static int py_users;

int trw__py_begin(const trw_env *env, int install_symbolics, char *err, size_t errlen)
{
  PyGILState_STATE gil = PyGILState_Ensure();
  if (py_users++ > 0) {
    PyGILState_Release(gil);
    return 0;
  }
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  int rc = 0;
  PyObject *m = trw__py_module();
  Py_XDECREF(m);
  if (!m || (install_symbolics && trw__py_install_symbolics(env) != 0) ||
      trw__py_patch_functions(env) != 0 || trw__py_patch_modules(env) != 0) {
    char why[4000];
    trw__py_describe_error(why, sizeof why, 0);
    trw__fmt(err, errlen, "torchrw: cannot apply the Python rewriters: %s", why);
    trw__py_unpatch_modules();
    trw__py_unpatch_functions();
    py_users = 0;
    rc = TRW_EPYTHON;
  }
  PyErr_Restore(type, value, tb);
  PyGILState_Release(gil);
  return rc;
}

void trw__py_end(void)
{
  PyGILState_STATE gil = PyGILState_Ensure();
  if (py_users > 0 && --py_users == 0) {
    trw__py_unpatch_modules();
    trw__py_unpatch_functions();
  }
  PyGILState_Release(gil);
}

/* ------------------------------------------------------------------------ */
/* Trace hooks for RewriterContext                                           */

typedef struct {
  PyObject_HEAD
  PyObject *original;
  vectorcallfunc vectorcall;
} TraceHook;

static PyObject *hook_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
  TraceHook *h = (TraceHook *)self;
  char err[4096];
  if (trw__scope_enter(err, sizeof err) != 0) {
    PyErr_SetString(PyExc_RuntimeError, err);
    return NULL;
  }
  PyObject *r = PyObject_Vectorcall(h->original, args, nargsf, kwnames);
  trw__scope_leave();
  return r;
}

static void hook_dealloc(TraceHook *h)
{
  Py_XDECREF(h->original);
  Py_TYPE(h)->tp_free((PyObject *)h);
}

static PyTypeObject TraceHookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.TraceHook",
    .tp_basicsize = sizeof(TraceHook),
    .tp_dealloc = (destructor)hook_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(TraceHook, vectorcall),
    .tp_descr_get = trw__py_bind_method,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "A torch trace entry point that turns torchrw on around the trace.",
};

/* The entry points torch.onnx.export and torch.jit.trace reach. */
static const struct {
  const char *owner;
  const char *attr;
} hook_targets[] = {
    {"torch._C", "_create_graph_by_tracing"},
    {"torch._C", "_create_function_from_trace"},
    {"torch._C.ScriptModule", "_create_method_from_trace"},
};
#define NHOOKS (sizeof hook_targets / sizeof hook_targets[0])

/* ------------------------------------------------------------------------ */
/* RewriterContext                                                           */

typedef struct {
  PyObject_HEAD
  PyObject *cfg;
  PyObject *backend;
  PyObject *ir;
  int opset;
  int entered;
  PyObject *saved[NHOOKS][2]; /* owner, original */
} RewriterContext;

static RewriterContext *active_context;

static int rc_init(RewriterContext *self, PyObject *args, PyObject *kw)
{
  static char *kwlist[] = {"cfg", "backend", "ir", "opset", NULL};
  PyObject *cfg = Py_None, *backend = Py_None, *ir = Py_None;
  int opset = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOOi", kwlist, &cfg, &backend, &ir, &opset))
    return -1;
  Py_INCREF(cfg);
  Py_INCREF(backend);
  Py_INCREF(ir);
  Py_XSETREF(self->cfg, cfg);
  Py_XSETREF(self->backend, backend);
  Py_XSETREF(self->ir, ir);
  self->opset = opset;
  return 0;
}

/* The cfg argument as JSON text: a dict (or mmengine Config) or a path. */
static PyObject *cfg_json(PyObject *cfg, int *is_path)
{
  *is_path = 0;
  if (cfg == Py_None)
    return PyUnicode_FromString("{}");
  if (PyUnicode_Check(cfg) || PyObject_HasAttrString(cfg, "__fspath__")) {
    *is_path = 1;
    return PyOS_FSPath(cfg);
  }
  PyObject *json = PyImport_ImportModule("json");
  PyObject *str = PyObject_GetAttrString((PyObject *)&PyUnicode_Type, "__str__");
  PyObject *kw = str ? Py_BuildValue("{s:O}", "default", str) : NULL;
  PyObject *dumps = json ? PyObject_GetAttrString(json, "dumps") : NULL;
  PyObject *args = PyTuple_Pack(1, cfg);
  PyObject *text = dumps && kw && args ? PyObject_Call(dumps, args, kw) : NULL;
  Py_XDECREF(json);
  Py_XDECREF(str);
  Py_XDECREF(kw);
  Py_XDECREF(dumps);
  Py_XDECREF(args);
  return text;
}

static void restore_hooks(RewriterContext *self)
{
  for (size_t i = 0; i < NHOOKS; i++) {
    if (!self->saved[i][0])
      continue;
    if (PyObject_SetAttrString(self->saved[i][0], hook_targets[i].attr, self->saved[i][1]) != 0)
      PyErr_Clear();
    Py_CLEAR(self->saved[i][0]);
    Py_CLEAR(self->saved[i][1]);
  }
}

static int install_hooks(RewriterContext *self)
{
  for (size_t i = 0; i < NHOOKS; i++) {
    PyObject *owner = NULL;
    const char *attr = NULL;
    char path[128], why[256];
    trw__fmt(path, sizeof path, "%s.%s", hook_targets[i].owner, hook_targets[i].attr);
    if (trw__py_resolve(path, &owner, &attr, why, sizeof why) != 0) {
      trw__py_raise("cannot hook %s: %s", path, why);
      return -1;
    }
    PyObject *orig = PyObject_GetAttrString(owner, attr);
    TraceHook *h = orig ? PyObject_New(TraceHook, &TraceHookType) : NULL;
    if (!h) {
      Py_XDECREF(orig);
      Py_DECREF(owner);
      return -1;
    }
    h->original = orig;
    h->vectorcall = hook_vectorcall;
    self->saved[i][0] = owner;
    self->saved[i][1] = orig;
    Py_INCREF(orig);
    int rc = PyObject_SetAttrString(owner, attr, (PyObject *)h);
    Py_DECREF(h);
    if (rc != 0)
      return -1;
  }
  return 0;
}

static PyObject *rc_enter(RewriterContext *self, PyObject *noargs)
{
  (void)noargs;
  if (active_context)
    return trw__py_raise("a RewriterContext is already active; nesting is not supported "
                         "(leave the first block before entering another)");
  if (trw__scope_depth() > 0)
    return trw__py_raise("RewriterContext entered during a trace; enter it around "
                         "torch.onnx.export, not inside the model");
  PyObject *keep_b = NULL, *keep_i = NULL;
  const char *backend = NULL, *ir = NULL;
  if (self->backend != Py_None) {
    keep_b = PyUnicode_Check(self->backend) ? (Py_INCREF(self->backend), self->backend)
                                            : PyObject_GetAttrString(self->backend, "value");
    backend = keep_b ? PyUnicode_AsUTF8(keep_b) : NULL;
    if (!backend)
      return NULL;
  }
  if (self->ir != Py_None) {
    keep_i = PyUnicode_Check(self->ir) ? (Py_INCREF(self->ir), self->ir)
                                       : PyObject_GetAttrString(self->ir, "value");
    ir = keep_i ? PyUnicode_AsUTF8(keep_i) : NULL;
    if (!ir) {
      Py_XDECREF(keep_b);
      return NULL;
    }
  }
  int is_path = 0;
  PyObject *text = cfg_json(self->cfg, &is_path);
  const char *cfg = text ? PyUnicode_AsUTF8(text) : NULL;
  char err[2048];
  int rc = cfg ? trw__runtime_push_mode(backend, cfg, is_path, ir, self->opset, err, sizeof err)
               : -1;
  Py_XDECREF(keep_b);
  Py_XDECREF(keep_i);
  Py_XDECREF(text);
  if (rc != 0) {
    if (!PyErr_Occurred())
      PyErr_SetString(rc == TRW_EBACKEND ? PyExc_ValueError : PyExc_RuntimeError, err);
    return NULL;
  }
  if (trw__py_install_symbolics(trw__runtime_env()) != 0 || install_hooks(self) != 0) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    restore_hooks(self);
    trw__py_uninstall_symbolics();
    trw__runtime_pop_mode();
    PyErr_Restore(type, value, tb);
    return NULL;
  }
  self->entered = 1;
  active_context = self;
  Py_INCREF(self);
  return (PyObject *)self;
}

static PyObject *rc_exit(RewriterContext *self, PyObject *args)
{
  (void)args;
  if (active_context != self || !self->entered)
    return trw__py_raise("this RewriterContext is not active");
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  restore_hooks(self);
  trw__py_uninstall_symbolics();
  trw__runtime_pop_mode();
  self->entered = 0;
  active_context = NULL;
  PyErr_Restore(type, value, tb);
  Py_RETURN_FALSE;
}

static void rc_dealloc(RewriterContext *self)
{
  if (active_context == self)
    active_context = NULL;
  restore_hooks(self);
  Py_XDECREF(self->cfg);
  Py_XDECREF(self->backend);
  Py_XDECREF(self->ir);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef rc_methods[] = {
    {"__enter__", (PyCFunction)rc_enter, METH_NOARGS, "Turn the rewriters on for the block."},
    {"__exit__", (PyCFunction)rc_exit, METH_VARARGS, "Give torch everything back."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject RewriterContextType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.RewriterContext",
    .tp_basicsize = sizeof(RewriterContext),
    .tp_dealloc = (destructor)rc_dealloc,
    .tp_init = (initproc)rc_init,
    .tp_new = PyType_GenericNew,
    .tp_methods = rc_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RewriterContext(cfg=None, backend=None, ir='onnx', opset=0)\n\n"
              "with torchrw.RewriterContext(cfg, backend='tensorrt'):\n"
              "    torch.onnx.export(...)\n\n"
              "Applies torchrw's rewriters (operators, Python functions, modules,\n"
              "symbolics) to the traces and exports in the block, without preloading.",
};

int trw__py_scope_ready(PyObject *m)
{
  if (PyType_Ready(&TraceHookType) < 0 || PyType_Ready(&RewriterContextType) < 0)
    return -1;
  Py_INCREF(&RewriterContextType);
  return PyModule_AddObject(m, "RewriterContext", (PyObject *)&RewriterContextType);
}
