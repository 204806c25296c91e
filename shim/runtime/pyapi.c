/*
 * pyapi.c - the runtime's face in the torchrw Python module:
 * torchrw.RewriterContext (rewriting without preloading), the module's
 * listing helpers for `torchrw list`, and PyInit_torchrw, which makes the
 * runtime an extension module so that `import torchrw` and the preloaded
 * shim share one registry.
 */
#include <jansson.h>
#include <string.h>

#include "../adapter/adapter.h"
#include "../python/glue.h"
#include "runtime.h"

/* ------------------------------------------------------------------------ */
/* RewriterContext                                                           */

typedef struct {
  PyObject_HEAD
  PyObject *cfg;
  PyObject *backend;
  PyObject *ir;
  int opset;
  int entered;
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

/* The cfg argument as JSON text: a path, a dict, or a mapping with
 * to_dict() (mmengine's Config).  Values JSON has no form for are written
 * as their str(). */
static PyObject *cfg_json(PyObject *cfg, int *is_path)
{
  *is_path = 0;
  if (cfg == Py_None)
    return PyUnicode_FromString("{}");
  if (PyUnicode_Check(cfg) || PyObject_HasAttrString(cfg, "__fspath__")) {
    *is_path = 1;
    return PyOS_FSPath(cfg);
  }
  PyObject *plain = PyObject_HasAttrString(cfg, "to_dict")
                        ? PyObject_CallMethod(cfg, "to_dict", NULL)
                        : Py_NewRef(cfg);
  PyObject *json = plain ? PyImport_ImportModule("json") : NULL;
  PyObject *kw = json ? Py_BuildValue("{s:O}", "default", (PyObject *)&PyUnicode_Type) : NULL;
  PyObject *dumps = json ? PyObject_GetAttrString(json, "dumps") : NULL;
  PyObject *args = plain ? PyTuple_Pack(1, plain) : NULL;
  PyObject *text = dumps && kw && args ? PyObject_Call(dumps, args, kw) : NULL;
  Py_XDECREF(plain);
  Py_XDECREF(json);
  Py_XDECREF(kw);
  Py_XDECREF(dumps);
  Py_XDECREF(args);
  return text;
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
  if (trw__py_install_symbolics(trw__runtime_env()) != 0 ||
      trw__hooks_install(TRW__HOOKS_CONTEXT, 1) != 0) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    trw__hooks_remove(TRW__HOOKS_CONTEXT);
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

/* Gives torch everything the block took: hooks, symbolics, explicit mode. */
static void rc_leave(RewriterContext *self)
{
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  trw__hooks_remove(TRW__HOOKS_CONTEXT);
  trw__py_uninstall_symbolics();
  trw__runtime_pop_mode();
  self->entered = 0;
  active_context = NULL;
  PyErr_Restore(type, value, tb);
}

static PyObject *rc_exit(RewriterContext *self, PyObject *args)
{
  (void)args;
  if (active_context != self || !self->entered)
    return trw__py_raise("this RewriterContext is not active");
  rc_leave(self);
  Py_RETURN_FALSE;
}

static int finalizing(void)
{
#if PY_VERSION_HEX >= 0x030d0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

/* A block entered and never left (__enter__ by hand, or an exception
 * between __enter__ and the with) ends when its context is collected. */
static void rc_dealloc(RewriterContext *self)
{
  if (active_context == self) {
    if (finalizing()) {
      /* torch's modules are being torn down: nothing to give back to. */
      trw__runtime_pop_mode();
      active_context = NULL;
    } else {
      trw__log(TRW__LOG_WARN, "a RewriterContext was collected without __exit__; its "
                              "rewriters are switched off and torch has its own back");
      rc_leave(self);
    }
  }
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

static int add_context_type(PyObject *m)
{
  if (PyType_Ready(&RewriterContextType) < 0)
    return -1;
  Py_INCREF(&RewriterContextType);
  return PyModule_AddObject(m, "RewriterContext", (PyObject *)&RewriterContextType);
}

/* ------------------------------------------------------------------------ */
/* Listings                                                                  */

static PyObject *prepare(PyObject *self, PyObject *noargs)
{
  (void)self;
  (void)noargs;
  char err[8192];
  if (trw__runtime_prepare(err, sizeof err) != 0) {
    if (!PyErr_Occurred())
      PyErr_SetString(PyExc_RuntimeError, err);
    return NULL;
  }
  Py_RETURN_NONE;
}

/* Every rewriter, and for a backend which one each name selects, as JSON
 * (for `torchrw list`). */
static PyObject *list_json(PyObject *self, PyObject *args)
{
  (void)self;
  const char *backend = NULL, *exporter = NULL;
  int opset = 0;
  if (!PyArg_ParseTuple(args, "|ziz", &backend, &opset, &exporter))
    return NULL;
  static const char *const kinds[] = {"function", "module", "symbolic"};
  const trw_env *base = trw__runtime_env();
  trw_env env = *base;
  if (backend) {
    const trw__backend *info = NULL;
    char why[768];
    if (trw__backend_parse(backend, &info, &env.version, why, sizeof why) != 0)
      return PyErr_Format(PyExc_ValueError, "torchrw: %s", why);
    env.backend = info->name;
  }
  if (exporter && strcmp(exporter, "torch.export") == 0)
    env.exporter = TRW_EXPORTER_TORCH_EXPORT;
  else if (exporter && strcmp(exporter, "torchscript") == 0)
    env.exporter = TRW_EXPORTER_TORCHSCRIPT;
  else if (exporter)
    return PyErr_Format(PyExc_ValueError, "torchrw: exporter '%s' is not 'torchscript' or "
                        "'torch.export'", exporter);
  env.ir = TRW_IR_ONNX;
  env.opset = opset ? opset : (int)trw_cfg_get_int(env.cfg, "onnx_config.opset_version", 14);
  json_t *list = json_array();
  size_t n = trw__registry_count();
  for (size_t i = 0; i < n; i++) {
    trw__rewriter *r = trw__registry_at(i);
    json_t *checkers = json_array();
    /* C checkers by the names written at registration ("a, b"). */
    const char *names = r->checker_names;
    for (int c = 0; c < 4 && r->checkers[c]; c++) {
      const char *comma = names ? strchr(names, ',') : NULL;
      size_t len = names ? (comma ? (size_t)(comma - names) : strlen(names)) : 0;
      json_array_append_new(checkers, names ? json_stringn(names, len) : json_string("C checker"));
      for (names = comma ? comma + 1 : NULL; names && *names == ' ';)
        names++;
    }
    if (r->lang == TRW__LANG_PYTHON) {
      PyObject *t = PyTuple_GET_ITEM((PyObject *)r->fn, TRW__PY_CHECKERS);
      for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(t); c++) {
        PyObject *repr = PyObject_Repr(PyTuple_GET_ITEM(t, c));
        const char *u = repr ? PyUnicode_AsUTF8(repr) : NULL;
        json_array_append_new(checkers, json_string(u ? u : "?"));
        Py_XDECREF(repr);
        PyErr_Clear();
      }
    }
    json_t *item = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s, s:s, s:i, s:s, s:b, s:b, s:o}",
                             "kind", kinds[r->kind], "name", r->name, "backend", r->backend,
                             "backend_version", r->versions, "ir",
                             trw__ir_name(r->ir), "stable", r->stable, "file", r->file, "line",
                             r->line, "lang", r->lang == TRW__LANG_C ? "c" : "python",
                             "builtin", r->builtin, "disabled", r->disabled, "checkers",
                             checkers);
    /* What TRW_FIXES says it removes from `torchrw check`'s findings. */
    json_t *fixes = json_array();
    trw__fix fx;
    for (size_t f = 0; trw__fixes_get(f, &fx) == 0; f++)
      if (strcmp(fx.name, r->name) == 0 && strcmp(fx.backend, r->backend) == 0 &&
          strcmp(fx.versions ? fx.versions : "", r->versions ? r->versions : "") == 0)
        json_array_append_new(fixes, json_pack("{s:s, s:s, s:s, s:i}", "op", fx.op, "rule",
                                               fx.rule, "file", fx.file, "line", fx.line));
    if (item)
      json_object_set_new(item, "fixes", fixes);
    else
      json_decref(fixes);
    if (backend && item) {
      json_object_set_new(item, "selected", json_boolean(trw__plan_selects(&env, r)));
    }
    json_array_append_new(list, item);
  }
  PyErr_Clear();
  json_t *doc = json_pack("{s:s?, s:s, s:i, s:o}", "backend", backend, "backend_version",
                          trw__env_version(&env), "opset", env.opset, "rewriters", list);
  char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
  json_decref(doc);
  if (!text)
    return PyErr_NoMemory();
  PyObject *out = PyUnicode_FromString(text);
  free(text);
  return out;
}

static PyMethodDef runtime_methods[] = {
    {"_prepare", prepare, METH_NOARGS,
     "Read the environment and load plugins and TORCHRW_PYTHON modules now."},
    {"_list_json", list_json, METH_VARARGS,
     "_list_json(backend=None, opset=0, exporter=None): the registry as JSON, for `torchrw "
     "list` and `torchrw check`."},
    {NULL, NULL, 0, NULL}};

/* Added to the torchrw module when the Python glue creates it. */
static int add_runtime_part(PyObject *m)
{
  const trw__adapter *a = trw__adapter_get();
  if (add_context_type(m) < 0 || PyModule_AddFunctions(m, runtime_methods) < 0 ||
      PyModule_AddStringConstant(m, "torch_version", a->version) < 0)
    return -1;
  return 0;
}

__attribute__((constructor)) static void queue_runtime_part(void)
{
  trw__py_add_module_part(add_runtime_part);
}

/* The runtime as the extension module torchrw: `import torchrw` finds the
 * module the preloaded shim already uses, or creates it.  Refuses to load
 * into a process whose torch is not the one this runtime was built for. */
__attribute__((visibility("default"))) PyObject *PyInit_torchrw(void)
{
  char err[1024];
  if (trw__runtime_check_torch(err, sizeof err) != 0) {
    PyErr_SetString(PyExc_ImportError, err);
    return NULL;
  }
  return trw__py_module();
}
