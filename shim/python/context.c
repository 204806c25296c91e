/*
 * context.c - what a Python rewriter sees: torchrw.Context, the per-thread
 * stack that get_context() reads in O(1), and torchrw.Config.
 */
#include <jansson.h>
#include <string.h>

#include "glue.h"

#include <structmember.h>

/* ------------------------------------------------------------------------ */
/* Config: a dict whose keys are also attributes (cfg.onnx_config.opset)     */

static PyObject *config_getattro(PyObject *self, PyObject *name)
{
  PyObject *v = PyObject_GenericGetAttr(self, name);
  if (v || !PyErr_ExceptionMatches(PyExc_AttributeError))
    return v;
  PyObject *item = PyDict_GetItemWithError(self, name);
  if (item) {
    PyErr_Clear();
    Py_INCREF(item);
    return item;
  }
  return NULL; /* the AttributeError stands */
}

static PyTypeObject ConfigType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.Config",
    .tp_basicsize = sizeof(PyDictObject),
    .tp_getattro = config_getattro,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_DICT_SUBCLASS,
    .tp_doc = "The deployment config: a dict whose keys read as attributes too.",
};

static PyObject *from_json(json_t *j)
{
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    PyObject *d = PyObject_CallNoArgs((PyObject *)&ConfigType);
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
      PyObject *pv = d ? from_json(v) : NULL;
      if (!pv || PyDict_SetItemString(d, k, pv) != 0) {
        Py_XDECREF(pv);
        Py_XDECREF(d);
        return NULL;
      }
      Py_DECREF(pv);
    }
    return d;
  }
  case JSON_ARRAY: {
    PyObject *l = PyList_New((Py_ssize_t)json_array_size(j));
    for (size_t i = 0; l && i < json_array_size(j); i++) {
      PyObject *pv = from_json(json_array_get(j, i));
      if (!pv) {
        Py_DECREF(l);
        return NULL;
      }
      PyList_SET_ITEM(l, (Py_ssize_t)i, pv);
    }
    return l;
  }
  case JSON_STRING:
    return PyUnicode_FromStringAndSize(json_string_value(j), (Py_ssize_t)json_string_length(j));
  case JSON_INTEGER:
    return PyLong_FromLongLong(json_integer_value(j));
  case JSON_REAL:
    return PyFloat_FromDouble(json_real_value(j));
  case JSON_TRUE:
    Py_RETURN_TRUE;
  case JSON_FALSE:
    Py_RETURN_FALSE;
  default:
    Py_RETURN_NONE;
  }
}

PyObject *trw__py_config(const trw_cfg *cfg)
{
  json_t *root = trw__cfg_root(cfg);
  return root ? from_json(root) : PyObject_CallNoArgs((PyObject *)&ConfigType);
}

/* ------------------------------------------------------------------------ */
/* Context                                                                   */

typedef struct {
  PyObject_HEAD
  PyObject *cfg;
  PyObject *origin_func;
  PyObject *backend;
  PyObject *backend_version; /* "8.5"; "" for a backend without versions */
  PyObject *ir;
  int opset;
  PyObject *exporter; /* "torchscript" or "torch.export" */
  PyObject *name;   /* stable name, "torch.topk@tensorrt" */
  PyObject *target; /* "torch.topk" */
  PyObject *file;
  int line;
  /* Set by whoever creates it; extra state for symbolic/module glue. */
  PyObject *extra;
} Context;

static void context_dealloc(Context *c)
{
  Py_XDECREF(c->cfg);
  Py_XDECREF(c->origin_func);
  Py_XDECREF(c->backend);
  Py_XDECREF(c->backend_version);
  Py_XDECREF(c->ir);
  Py_XDECREF(c->exporter);
  Py_XDECREF(c->name);
  Py_XDECREF(c->target);
  Py_XDECREF(c->file);
  Py_XDECREF(c->extra);
  Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *context_repr(Context *c)
{
  return PyUnicode_FromFormat("<torchrw.Context %U (%U:%d) backend=%U ir=%U opset=%d "
                              "exporter=%U>",
                              c->name, c->file, c->line, c->backend, c->ir, c->opset,
                              c->exporter);
}

static PyMemberDef context_members[] = {
    {"cfg", T_OBJECT, offsetof(Context, cfg), READONLY, "the deployment config"},
    {"origin_func", T_OBJECT, offsetof(Context, origin_func), READONLY,
     "what the rewriter replaces (None if nothing)"},
    {"backend", T_OBJECT, offsetof(Context, backend), READONLY, "the active backend"},
    {"backend_version", T_OBJECT, offsetof(Context, backend_version), READONLY,
     "the engine version exported for: '8.5' under tensorrt:8.5, the newest table's "
     "under a bare name, '' for a backend without versions"},
    {"ir", T_OBJECT, offsetof(Context, ir), READONLY, "'onnx' or 'torchscript'"},
    {"opset", T_INT, offsetof(Context, opset), READONLY, "the ONNX opset (0 outside ONNX)"},
    {"exporter", T_OBJECT, offsetof(Context, exporter), READONLY,
     "how the model is captured: 'torchscript' (torch's tracer) or 'torch.export'"},
    {"name", T_OBJECT, offsetof(Context, name), READONLY,
     "the rewriter's stable name (TORCHRW_DISABLE, report)"},
    {"target", T_OBJECT, offsetof(Context, target), READONLY, "what it rewrites"},
    {"file", T_OBJECT, offsetof(Context, file), READONLY, "where it was registered"},
    {"line", T_INT, offsetof(Context, line), READONLY, "where it was registered"},
    {NULL, 0, 0, 0, NULL}};

static PyTypeObject ContextType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.Context",
    .tp_basicsize = sizeof(Context),
    .tp_dealloc = (destructor)context_dealloc,
    .tp_repr = (reprfunc)context_repr,
    .tp_members = context_members,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "What a rewriter knows: cfg, origin_func, backend, backend_version, ir, opset, name.",
};


/* One Config per deployment config: rewriters that keep state on ctx.cfg
 * see it. */
static PyObject *cached_cfg;
static uint64_t cached_cfg_serial = ~(uint64_t)0;

PyObject *trw__py_context_new(trw__rewriter *r, const trw_env *env, PyObject *origin)
{
  if (!cached_cfg || cached_cfg_serial != trw__cfg_serial(env->cfg)) {
    PyObject *cfg = trw__py_config(env->cfg);
    if (!cfg)
      return NULL;
    Py_XSETREF(cached_cfg, cfg);
    cached_cfg_serial = trw__cfg_serial(env->cfg);
  }
  Context *c = PyObject_New(Context, &ContextType);
  if (!c)
    return NULL;
  c->cfg = cached_cfg;
  Py_INCREF(c->cfg);
  c->origin_func = origin ? origin : Py_None;
  Py_INCREF(c->origin_func);
  c->backend = PyUnicode_FromString(trw_env_backend(env));
  c->backend_version = PyUnicode_FromString(trw__env_version(env));
  c->ir = PyUnicode_FromString(trw__ir_name(env->ir));
  c->opset = env->opset;
  c->exporter = PyUnicode_FromString(trw_exporter_name(env->exporter));
  c->name = PyUnicode_FromString(r->stable);
  c->target = PyUnicode_FromString(r->name);
  c->file = PyUnicode_FromString(r->file);
  c->line = r->line;
  c->extra = NULL;
  if (!c->backend || !c->backend_version || !c->ir || !c->exporter || !c->name || !c->target || !c->file) {
    Py_DECREF(c);
    return NULL;
  }
  return (PyObject *)c;
}

/* ------------------------------------------------------------------------ */
/* The per-thread stack of running rewriters                                 */

#define STACK_MAX 256
static __thread PyObject *stack[STACK_MAX];
/* passed[i]: the rewriter of stack[i] left its call to the original. */
static __thread unsigned char passed[STACK_MAX];
static __thread int depth;

int trw__py_context_push(PyObject *ctx)
{
  if (depth >= STACK_MAX) {
    PyErr_SetString(PyExc_RecursionError,
                    "torchrw: rewriters nested more than 256 deep");
    return -1;
  }
  passed[depth] = 0;
  stack[depth++] = ctx; /* borrowed: the caller holds it for the call */
  return 0;
}

void trw__py_context_passed(void)
{
  if (depth > 0)
    passed[depth - 1] = 1;
}

int trw__py_context_top_passed(void)
{
  return depth > 0 && passed[depth - 1];
}

void trw__py_context_pop(void)
{
  if (depth > 0)
    depth--;
}

PyObject *trw__py_context_top(const char *name)
{
  for (int i = depth - 1; i >= 0; i--) {
    if (!name)
      return stack[i];
    Context *c = (Context *)stack[i];
    const char *t = PyUnicode_AsUTF8(c->target);
    const char *s = PyUnicode_AsUTF8(c->name);
    if ((t && strcmp(t, name) == 0) || (s && strcmp(s, name) == 0))
      return stack[i];
  }
  return NULL;
}

int trw__py_context_ready(PyObject *m)
{
  ConfigType.tp_base = &PyDict_Type;
  if (PyType_Ready(&ConfigType) < 0 || PyType_Ready(&ContextType) < 0)
    return -1;
  Py_INCREF(&ConfigType);
  if (PyModule_AddObject(m, "Config", (PyObject *)&ConfigType) < 0)
    return -1;
  Py_INCREF(&ContextType);
  return PyModule_AddObject(m, "Context", (PyObject *)&ContextType);
}
