/*
 * module.c - the torchrw Python module: FUNCTION_REWRITER, MODULE_REWRITER
 * and SYMBOLIC_REWRITER, backed by the C registry.
 *
 *     @FUNCTION_REWRITER.register_rewriter("torch.Tensor.repeat", backend="tensorrt")
 *     def repeat_static(input, *size):
 *         ctx = FUNCTION_REWRITER.get_context()
 *         ...
 */
#include <jansson.h>
#include <limits.h>
#include <string.h>

#include "../adapter/adapter.h"
#include "glue.h"

static PyObject *the_module;
/* ------------------------------------------------------------------------ */
/* Argument conversion                                                       */

/* A backend or IR argument: a string, None, or an enum with .value. */
static const char *enum_string(PyObject *o, PyObject **keep)
{
  *keep = NULL;
  if (!o || o == Py_None)
    return NULL;
  if (!PyUnicode_Check(o)) {
    PyObject *v = PyObject_GetAttrString(o, "value");
    if (!v || !PyUnicode_Check(v)) {
      Py_XDECREF(v);
      PyErr_Clear();
      PyErr_Format(PyExc_TypeError, "torchrw: expected a string, got %R", o);
      return NULL;
    }
    *keep = v;
    return PyUnicode_AsUTF8(v);
  }
  return PyUnicode_AsUTF8(o);
}

static int parse_ir(PyObject *o, trw_ir *ir)
{
  PyObject *keep;
  *ir = TRW_IR_ANY;
  if (!o || o == Py_None)
    return 0;
  const char *s = enum_string(o, &keep);
  int rc = 0;
  if (!s)
    rc = -1;
  else if (trw__ir_parse(s, ir) != 0) {
    PyErr_Format(PyExc_ValueError,
                 "torchrw: ir=%R is not one of 'onnx', 'torchscript', 'default'", o);
    rc = -1;
  }
  Py_XDECREF(keep);
  return rc;
}

/* The registration site: the Python frame that called the registry. */
static void caller_site(char *file, size_t len, int *line)
{
  PyFrameObject *f = PyEval_GetFrame();
  trw__fmt(file, len, "<python>");
  *line = 0;
  if (!f)
    return;
  PyCodeObject *code = PyFrame_GetCode(f);
  const char *fn = code && code->co_filename ? PyUnicode_AsUTF8(code->co_filename) : NULL;
  if (fn)
    trw__fmt(file, len, "%s", fn);
  *line = PyFrame_GetLineNumber(f);
  Py_XDECREF(code);
  PyErr_Clear();
}

/* ------------------------------------------------------------------------ */
/* Checkers                                                                  */


/* Python checkers see a dict: backend, backend_version, ir, opset, torch
 * (version), exporter. */
static int python_checkers(const trw__rewriter *r, const trw_env *env)
{
  PyObject *payload = (PyObject *)r->fn;
  PyObject *checkers = PyTuple_GET_ITEM(payload, TRW__PY_CHECKERS);
  Py_ssize_t n = PyTuple_GET_SIZE(checkers);
  if (n == 0)
    return 1;
  char version[32];
  trw__fmt(version, sizeof version, "%d.%d", env->torch_major, env->torch_minor);
  PyObject *d = Py_BuildValue("{s:s, s:s, s:s, s:i, s:s, s:s}", "backend",
                              trw_env_backend(env), "backend_version", trw__env_version(env),
                              "ir", trw__ir_name(env->ir),
                              "opset", env->opset, "torch", version, "exporter",
                              trw_exporter_name(env->exporter));
  int ok = d != NULL;
  for (Py_ssize_t i = 0; ok && i < n; i++) {
    PyObject *res = PyObject_CallOneArg(PyTuple_GET_ITEM(checkers, i), d);
    int truth = res ? PyObject_IsTrue(res) : -1;
    Py_XDECREF(res);
    if (truth < 0) {
      char why[512];
      trw__py_describe_error(why, sizeof why, 0);
      trw__log(TRW__LOG_WARN, "checker of %s (%s:%d) raised (%s); skipping the rewriter",
               r->stable, r->file, r->line, why);
    }
    ok = truth > 0;
  }
  Py_XDECREF(d);
  PyErr_Clear();
  return ok;
}

static void release_payload(void *p)
{
  /* Replacements happen with the GIL held (registration from Python, or
   * plugins loaded at activation). */
  PyGILState_STATE g = PyGILState_Ensure();
  Py_XDECREF((PyObject *)p);
  PyGILState_Release(g);
}

/* ------------------------------------------------------------------------ */
/* The decorator returned by register_*                                      */

typedef struct {
  PyObject_HEAD
  trw_kind kind;
  PyObject *name; /* str */
  PyObject *backend;
  PyObject *version; /* backend_version=: a str constraint ("<8.6") or None */
  trw_ir ir;
  PyObject *checkers; /* tuple */
  PyObject *kwargs;   /* dict or None */
  int is_pytorch;
  PyObject *descriptors; /* tuple or None */
  char file[512];
  int line;
} Decorator;

static void decorator_dealloc(Decorator *d)
{
  Py_XDECREF(d->name);
  Py_XDECREF(d->backend);
  Py_XDECREF(d->checkers);
  Py_XDECREF(d->kwargs);
  Py_XDECREF(d->version);
  Py_XDECREF(d->descriptors);
  Py_TYPE(d)->tp_free((PyObject *)d);
}

/* site=(file, line): where the registration is to be said to come from.
 * Fails with a TypeError naming the value when it is not a str and an int
 * >= 0. */
static int parse_site(PyObject *site, char *file, size_t len, int *line)
{
  PyObject *f = NULL, *l = NULL;
  if (PyTuple_Check(site) && PyTuple_GET_SIZE(site) == 2) {
    f = PyTuple_GET_ITEM(site, 0);
    l = PyTuple_GET_ITEM(site, 1);
  }
  long n = l && PyLong_Check(l) && !PyBool_Check(l) ? PyLong_AsLong(l) : -1;
  const char *s = f && PyUnicode_Check(f) ? PyUnicode_AsUTF8(f) : NULL;
  if (!s || n < 0 || n > INT_MAX) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "torchrw: site=%R: expected (file, line), a str and an int >= 0", site);
    return -1;
  }
  trw__fmt(file, len, "%s", s);
  *line = (int)n;
  return 0;
}

/* decorator(fn, *, site=None): registers fn.  site=(file, line) names the
 * registration's site for listings and messages, for code that registers
 * on behalf of another file (torchrw.mmdeploy); by default it is where
 * register_*() was called. */
static PyObject *decorator_call(Decorator *d, PyObject *args, PyObject *kw)
{
  static char *kwlist[] = {"", "site", NULL};
  PyObject *fn, *site = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|$O:register", kwlist, &fn, &site))
    return NULL;
  if (!PyCallable_Check(fn))
    return PyErr_Format(PyExc_TypeError, "torchrw: %R is not callable", fn);
  char file[sizeof d->file];
  int line = d->line;
  trw__fmt(file, sizeof file, "%s", d->file);
  if (site != Py_None && parse_site(site, file, sizeof file, &line) != 0)
    return NULL;

  /* A symbolic's arg_descriptors are applied when it is installed
   * (symbolic.c), where torch.onnx is imported: not here. */
  PyObject *payload = PyTuple_Pack(TRW__PY_NFIELDS, fn, d->kwargs, d->checkers,
                                   d->is_pytorch ? Py_True : Py_False, d->descriptors);
  if (!payload)
    return NULL;

  PyObject *keep = NULL;
  const char *backend = enum_string(d->backend, &keep);
  if (!backend && PyErr_Occurred()) {
    Py_DECREF(payload);
    return NULL;
  }
  /* backend_version= joins the backend as "tensorrt:<8.6", the spelling a
   * C registration uses. */
  char spec[512];
  if (d->version != Py_None) {
    trw__fmt(spec, sizeof spec, "%s:%s", backend ? backend : "default",
             PyUnicode_AsUTF8(d->version));
    backend = spec;
  }
  trw_rewriter_def def = {.size = sizeof def, .api_version = TRW_API_VERSION,
                          .kind = d->kind, .name = PyUnicode_AsUTF8(d->name),
                          .backend = backend, .ir = d->ir, .fn = payload,
                          .file = file, .line = line};
  /* The checkers' identities are part of the key: the same name with other
   * checkers is another rewriter. */
  uintptr_t extra_key = 0;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(d->checkers); i++)
    extra_key = extra_key * 1000003u ^ (uintptr_t)PyTuple_GET_ITEM(d->checkers, i);
  char err[1024];
  int rc = trw__register(&def, TRW__LANG_PYTHON, 0, release_payload, python_checkers,
                         extra_key, err, sizeof err);
  Py_XDECREF(keep);
  if (rc != 0) {
    Py_DECREF(payload);
    PyErr_Format(rc == TRW_EBACKEND || rc == TRW_ENAME ? PyExc_ValueError
                                                       : PyExc_RuntimeError,
                 "torchrw: %s", err);
    return NULL;
  }
  Py_INCREF(fn);
  return fn; /* unchanged, so that decorators stack */
}

static PyTypeObject DecoratorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw._Decorator",
    .tp_basicsize = sizeof(Decorator),
    .tp_dealloc = (destructor)decorator_dealloc,
    .tp_call = (ternaryfunc)decorator_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "decorator(fn, *, site=None): registers fn and returns it unchanged.\n"
              "site=(file, line) says where the registration comes from (listings,\n"
              "messages); by default, where register_*() was called.",
};

/* ------------------------------------------------------------------------ */
/* The registries                                                            */

typedef struct {
  PyObject_HEAD
  trw_kind kind;
} Registry;

/* A class given as module_type: its dotted path. */
static PyObject *class_path(PyObject *o)
{
  if (PyUnicode_Check(o)) {
    Py_INCREF(o);
    return o;
  }
  if (!PyType_Check(o))
    return PyErr_Format(PyExc_TypeError, "torchrw: expected a dotted path or a class, got %R", o);
  PyObject *mod = PyObject_GetAttrString(o, "__module__");
  PyObject *qual = mod ? PyObject_GetAttrString(o, "__qualname__") : NULL;
  PyObject *path = qual ? PyUnicode_FromFormat("%U.%U", mod, qual) : NULL;
  Py_XDECREF(mod);
  Py_XDECREF(qual);
  return path;
}

static PyObject *make_decorator(Registry *self, PyObject *name, PyObject *backend,
                                PyObject *version, PyObject *ir, PyObject *checkers,
                                PyObject *kwargs, int is_pytorch, PyObject *descriptors)
{
  if (version && version != Py_None && !PyUnicode_Check(version))
    return PyErr_Format(PyExc_TypeError,
                        "torchrw: backend_version=%R: expected a str such as '8.5' or '<8.6'",
                        version);
  Decorator *d = PyObject_New(Decorator, &DecoratorType);
  if (!d)
    return NULL;
  d->kind = self->kind;
  d->name = class_path(name);
  d->backend = backend ? backend : Py_None;
  Py_INCREF(d->backend);
  d->version = version ? version : Py_None;
  Py_INCREF(d->version);
  d->kwargs = kwargs && PyDict_GET_SIZE(kwargs) ? kwargs : Py_None;
  Py_INCREF(d->kwargs);
  d->is_pytorch = is_pytorch;
  d->descriptors = NULL;
  d->checkers = NULL;
  caller_site(d->file, sizeof d->file, &d->line);
  if (!d->name || parse_ir(ir, &d->ir) != 0)
    goto fail;
  if (!checkers || checkers == Py_None)
    d->checkers = PyTuple_New(0);
  else if (PyCallable_Check(checkers))
    d->checkers = PyTuple_Pack(1, checkers);
  else
    d->checkers = PySequence_Tuple(checkers);
  if (!d->checkers)
    goto fail;
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(d->checkers); i++)
    if (!PyCallable_Check(PyTuple_GET_ITEM(d->checkers, i))) {
      PyErr_Format(PyExc_TypeError, "torchrw: extra checker %R is not callable",
                   PyTuple_GET_ITEM(d->checkers, i));
      goto fail;
    }
  if (descriptors && descriptors != Py_None) {
    d->descriptors = PySequence_Tuple(descriptors);
    if (!d->descriptors)
      goto fail;
  } else {
    d->descriptors = Py_None;
    Py_INCREF(Py_None);
  }
  const char *n = PyUnicode_AsUTF8(d->name);
  if (!n)
    goto fail;
  if (self->kind == TRW_KIND_FUNCTION && strstr(n, "::")) {
    PyErr_Format(PyExc_ValueError,
                 "torchrw: %s:%d: '%s' is an operator name; Python function "
                 "rewriters take a dotted path (torch.topk, torch.Tensor.repeat)",
                 d->file, d->line, n);
    goto fail;
  }
  return (PyObject *)d;
fail:
  Py_DECREF(d);
  return NULL;
}

static PyObject *register_rewriter(Registry *self, PyObject *args, PyObject *kw)
{
  static char *kwlist[] = {"func_name", "backend", "ir", "extra_checkers", "backend_version",
                           NULL};
  PyObject *name, *backend = NULL, *ir = NULL, *checkers = NULL, *version = NULL;
  PyObject *rest = NULL;
  /* mmdeploy accepts and ignores further keywords here; so do we. */
  if (kw) {
    rest = PyDict_Copy(kw);
    for (int i = 0; rest && kwlist[i]; i++)
      if (PyDict_DelItemString(rest, kwlist[i]) != 0)
        PyErr_Clear();
  }
  PyObject *known = kw ? PyDict_New() : NULL;
  for (int i = 0; kw && known && kwlist[i]; i++) {
    PyObject *v = PyDict_GetItemString(kw, kwlist[i]);
    if (v)
      PyDict_SetItemString(known, kwlist[i], v);
  }
  int ok = PyArg_ParseTupleAndKeywords(args, known, "O|OOOO", kwlist, &name, &backend,
                                       &ir, &checkers, &version);
  PyObject *d =
      ok ? make_decorator(self, name, backend, version, ir, checkers, NULL, 0, NULL) : NULL;
  Py_XDECREF(known);
  Py_XDECREF(rest);
  return d;
}

static PyObject *register_rewrite_module(Registry *self, PyObject *args, PyObject *kw)
{
  /* Keywords other than these are passed to the wrapper's constructor. */
  static char *kwlist[] = {"module_type", "backend", "ir", "extra_checkers", "backend_version",
                           NULL};
  PyObject *extra = kw ? PyDict_Copy(kw) : PyDict_New();
  PyObject *known = PyDict_New();
  if (!extra || !known)
    goto fail;
  for (int i = 0; kwlist[i]; i++) {
    PyObject *v = PyDict_GetItemString(extra, kwlist[i]);
    if (v) {
      PyDict_SetItemString(known, kwlist[i], v);
      PyDict_DelItemString(extra, kwlist[i]);
    }
  }
  PyObject *name, *backend = NULL, *ir = NULL, *checkers = NULL, *version = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, known, "O|OOOO", kwlist, &name, &backend, &ir,
                                   &checkers, &version))
    goto fail;
  PyObject *d = make_decorator(self, name, backend, version, ir, checkers, extra, 0, NULL);
  Py_DECREF(extra);
  Py_DECREF(known);
  return d;
fail:
  Py_XDECREF(extra);
  Py_XDECREF(known);
  return NULL;
}

static PyObject *register_symbolic(Registry *self, PyObject *args, PyObject *kw)
{
  static char *kwlist[] = {"func_name", "backend", "is_pytorch", "arg_descriptors",
                           "ir", "extra_checkers", "backend_version", NULL};
  PyObject *name, *backend = NULL, *descs = NULL, *ir = NULL, *checkers = NULL;
  PyObject *version = NULL;
  int is_pytorch = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OpOOOO", kwlist, &name, &backend,
                                   &is_pytorch, &descs, &ir, &checkers, &version))
    return NULL;
  return make_decorator(self, name, backend, version, ir, checkers, NULL, is_pytorch, descs);
}

static PyObject *get_context(PyObject *self, PyObject *args, PyObject *kw)
{
  (void)self;
  static char *kwlist[] = {"key", NULL};
  const char *key = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|z", kwlist, &key))
    return NULL;
  PyObject *ctx = trw__py_context_top(key);
  /* A function serving several targets asks for another's context, as in
   * mmdeploy: the one patched for that target. */
  if (!ctx && key && trw__rewriting_here())
    ctx = trw__py_patched_context(key);
  if (!ctx) {
    if (key)
      return PyErr_Format(PyExc_RuntimeError,
                          "torchrw: get_context(%R): no rewriter of that name is running or "
                          "applied to this trace",
                          PyTuple_GET_SIZE(args) ? PyTuple_GET_ITEM(args, 0)
                                                 : PyDict_GetItemString(kw, "key"));
    PyErr_SetString(PyExc_RuntimeError,
                    "torchrw: get_context() called outside a rewriter");
    return NULL;
  }
  Py_INCREF(ctx);
  return ctx;
}

static PyMethodDef registry_methods[] = {
    {"register_rewriter", (PyCFunction)(void (*)(void))register_rewriter,
     METH_VARARGS | METH_KEYWORDS,
     "register_rewriter(func_name, backend='default', ir=None, extra_checkers=None, backend_version=None)\n"
     "Decorator: rewrite the function or method at the dotted path func_name."},
    {"register_rewrite_module", (PyCFunction)(void (*)(void))register_rewrite_module,
     METH_VARARGS | METH_KEYWORDS,
     "register_rewrite_module(module_type, backend='default', ir=None, "
     "extra_checkers=None, **kwargs)\n"
     "Decorator: wrap every instance of module_type as Wrapper(module, cfg, **kwargs)."},
    {"register_symbolic", (PyCFunction)(void (*)(void))register_symbolic,
     METH_VARARGS | METH_KEYWORDS,
     "register_symbolic(func_name, backend='default', is_pytorch=False, "
     "arg_descriptors=None)\n"
     "Decorator: the ONNX symbolic of a torch operator or an autograd Function."},
    {"get_context", (PyCFunction)(void (*)(void))get_context,
     METH_VARARGS | METH_KEYWORDS,
     "get_context(key=None): the context of the innermost running rewriter "
     "(of the one named key)."},
    {NULL, NULL, 0, NULL}};

static PyObject *registry_repr(Registry *self)
{
  static const char *const names[] = {"FUNCTION_REWRITER", "MODULE_REWRITER",
                                      "SYMBOLIC_REWRITER"};
  return PyUnicode_FromFormat("<torchrw.%s>", names[self->kind]);
}

static PyTypeObject RegistryType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.RewriterRegistry",
    .tp_basicsize = sizeof(Registry),
    .tp_methods = registry_methods,
    .tp_repr = (reprfunc)registry_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One of torchrw's three registries (function, module, symbolic).",
};

/* ------------------------------------------------------------------------ */
/* Module functions                                                          */

static PyObject *list_rewriters(PyObject *self, PyObject *noargs)
{
  (void)self;
  (void)noargs;
  static const char *const kinds[] = {"function", "module", "symbolic"};
  PyObject *list = PyList_New(0);
  size_t n = trw__registry_count();
  for (size_t i = 0; list && i < n; i++) {
    trw__rewriter *r = trw__registry_at(i);
    PyObject *item = Py_BuildValue(
        "{s:s, s:s, s:s, s:z, s:s, s:s, s:s, s:i, s:s, s:O, s:O, s:K}", "kind", kinds[r->kind],
        "name", r->name, "backend", r->backend, "backend_version", r->versions, "ir", trw__ir_name(r->ir), "stable",
        r->stable, "file", r->file, "line", r->line, "lang",
        r->lang == TRW__LANG_C ? "c" : "python", "builtin", r->builtin ? Py_True : Py_False,
        "disabled", r->disabled ? Py_True : Py_False, "fired", (unsigned long long)r->total_hits);
    if (!item || PyList_Append(list, item) != 0) {
      Py_XDECREF(item);
      Py_CLEAR(list);
      break;
    }
    Py_DECREF(item);
  }
  return list;
}

static PyObject *select_rewriter(PyObject *self, PyObject *args, PyObject *kw)
{
  (void)self;
  static char *kwlist[] = {"kind", "name", "backend", "ir", "opset", NULL};
  const char *kind, *name, *backend;
  PyObject *ir_obj = NULL;
  int opset = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "sss|Oi", kwlist, &kind, &name, &backend,
                                   &ir_obj, &opset))
    return NULL;
  trw_kind k = strcmp(kind, "module") == 0     ? TRW_KIND_MODULE
               : strcmp(kind, "symbolic") == 0 ? TRW_KIND_SYMBOLIC
                                               : TRW_KIND_FUNCTION;
  const trw__adapter *a = trw__adapter_get();
  const trw__backend *info = NULL;
  const char *version = NULL;
  char why[768];
  if (trw__backend_parse(backend, &info, &version, why, sizeof why) != 0)
    return PyErr_Format(PyExc_ValueError, "torchrw: %s", why);
  trw_env env = {info->name, TRW_IR_ONNX, opset, TRW_EXPORTER_TORCHSCRIPT,
                 a->major, a->minor, NULL, version};
  if (ir_obj && parse_ir(ir_obj, &env.ir) != 0)
    return NULL;
  trw__rewriter *r = trw__select(k, name, &env);
  if (PyErr_Occurred())
    return NULL;
  if (!r)
    Py_RETURN_NONE;
  return PyUnicode_FromString(r->stable);
}

static PyMethodDef module_methods[] = {
    {"rewriters", list_rewriters, METH_NOARGS,
     "rewriters(): every registered rewriter as a dict (kind, name, backend, ir, "
     "stable, file, line, lang, builtin, disabled, fired)."},
    {"selected", (PyCFunction)(void (*)(void))select_rewriter, METH_VARARGS | METH_KEYWORDS,
     "selected(kind, name, backend, ir='onnx', opset=0): the stable name of the "
     "rewriter chosen for name, or None."},
    {"get_context", (PyCFunction)(void (*)(void))get_context, METH_VARARGS | METH_KEYWORDS,
     "get_context(key=None): the context of the innermost running rewriter."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "torchrw",
    "torchrw: per-backend rewriters applied while a model is traced for export.\n\n"
    "FUNCTION_REWRITER, MODULE_REWRITER and SYMBOLIC_REWRITER register Python\n"
    "rewriters in the same registry as torchrw's C rewriters.",
    -1, module_methods, NULL, NULL, NULL, NULL};

static int add_registry(PyObject *m, const char *name, trw_kind kind)
{
  Registry *r = PyObject_New(Registry, &RegistryType);
  if (!r)
    return -1;
  r->kind = kind;
  return PyModule_AddObject(m, name, (PyObject *)r) == 0 ? 0 : (Py_DECREF(r), -1);
}

static int add_ir(PyObject *m)
{
  PyObject *types = PyImport_ImportModule("types");
  PyObject *ns_type = types ? PyObject_GetAttrString(types, "SimpleNamespace") : NULL;
  PyObject *kw = Py_BuildValue("{s:s, s:s, s:s}", "ONNX", "onnx", "TORCHSCRIPT",
                               "torchscript", "DEFAULT", "default");
  PyObject *empty = PyTuple_New(0);
  PyObject *ns = (ns_type && kw && empty) ? PyObject_Call(ns_type, empty, kw) : NULL;
  Py_XDECREF(types);
  Py_XDECREF(ns_type);
  Py_XDECREF(kw);
  Py_XDECREF(empty);
  return ns && PyModule_AddObject(m, "IR", ns) == 0 ? 0 : -1;
}

static trw__py_builtin *pending;

void trw__py_queue_builtin(trw__py_builtin *b)
{
  b->next = pending;
  pending = b;
}

int trw__py_register_builtins(PyObject *m)
{
  /* Queued newest first; register in file order. */
  trw__py_builtin *order = NULL;
  while (pending) {
    trw__py_builtin *b = pending;
    pending = b->next;
    b->next = order;
    order = b;
  }
  for (trw__py_builtin *b = order; b; b = b->next) {
    PyMethodDef *def = PyMem_Calloc(1, sizeof *def); /* lives with the function */
    if (!def) {
      PyErr_NoMemory();
      return -1;
    }
    def->ml_name = b->name;
    def->ml_meth = b->fn;
    def->ml_flags = METH_FASTCALL | METH_KEYWORDS;
    def->ml_doc = "A torchrw built-in rewriter.";
    PyObject *fn = PyCFunction_NewEx(def, NULL, m);
    PyObject *empty = PyTuple_New(0);
    PyObject *payload = fn && empty ? PyTuple_Pack(TRW__PY_NFIELDS, fn, Py_None, empty,
                                                   Py_False, Py_None)
                                    : NULL;
    Py_XDECREF(fn);
    Py_XDECREF(empty);
    if (!payload)
      return -1;
    trw_rewriter_def rd = {.size = sizeof rd, .api_version = TRW_API_VERSION,
                           .kind = TRW_KIND_FUNCTION, .name = b->name, .backend = b->backend,
                           .fn = payload, .file = b->file, .line = b->line};
    char err[1024];
    if (trw__register(&rd, TRW__LANG_PYTHON, TRW__REG_BUILTIN, release_payload,
                      python_checkers, 0, err,
                      sizeof err) != 0) {
      Py_DECREF(payload);
      PyErr_Format(PyExc_RuntimeError, "torchrw: %s", err);
      return -1;
    }
  }
  return 0;
}

/* Parts that layers above add (the runtime: RewriterContext, listings),
 * queued by their constructors. */
#define MAX_PARTS 8
static trw__py_module_part parts[MAX_PARTS];
static int nparts;

void trw__py_add_module_part(trw__py_module_part part)
{
  if (nparts < MAX_PARTS)
    parts[nparts++] = part;
}

static int add_parts(PyObject *m)
{
  for (int i = 0; i < nparts; i++)
    if (parts[i](m) < 0)
      return -1;
  return 0;
}

/* The module takes the torchrw package's place in sys.modules (loaded by
 * the package's __init__.py, or created at activation in preload mode,
 * where PYTHONPATH holds the package), so it gets the package's __path__:
 * the package's submodules (torchrw.mmdeploy) then import.  Without a
 * torchrw package on sys.path the module has no __path__; that is no
 * error. */
static int add_package_path(PyObject *m)
{
  PyObject *machinery = PyImport_ImportModule("importlib.machinery");
  PyObject *finder = machinery ? PyObject_GetAttrString(machinery, "PathFinder") : NULL;
  PyObject *spec = finder ? PyObject_CallMethod(finder, "find_spec", "s", "torchrw") : NULL;
  PyObject *where = spec && spec != Py_None
                        ? PyObject_GetAttrString(spec, "submodule_search_locations")
                        : NULL;
  PyObject *path = where && where != Py_None ? PySequence_List(where) : NULL;
  int rc = path ? PyModule_AddObject(m, "__path__", path) : 0;
  if (rc != 0)
    Py_DECREF(path);
  Py_XDECREF(where);
  Py_XDECREF(spec);
  Py_XDECREF(finder);
  Py_XDECREF(machinery);
  if (!path)
    PyErr_Clear();
  return rc;
}

/* The glue's files, readied in this order, once, by create_module. */
static int (*const ready_parts[])(PyObject *m) = {
    trw__py_add_rewriter_error, trw__py_context_ready, trw__py_patch_ready,
    trw__py_modpatch_ready,     trw__py_lazy_ready,    trw__py_symbolic_ready,
    trw__py_csymbolic_ready,    trw__py_register_builtins,
};

static int ready_all(PyObject *m)
{
  for (size_t i = 0; i < sizeof ready_parts / sizeof ready_parts[0]; i++)
    if (ready_parts[i](m) < 0)
      return -1;
  return 0;
}

static PyObject *create_module(void)
{
  if (PyType_Ready(&DecoratorType) < 0 || PyType_Ready(&RegistryType) < 0)
    return NULL;
  PyObject *m = PyModule_Create(&module_def);
  if (!m)
    return NULL;
  if (add_registry(m, "FUNCTION_REWRITER", TRW_KIND_FUNCTION) < 0 ||
      add_registry(m, "MODULE_REWRITER", TRW_KIND_MODULE) < 0 ||
      add_registry(m, "SYMBOLIC_REWRITER", TRW_KIND_SYMBOLIC) < 0 || add_ir(m) < 0 ||
      PyModule_AddStringConstant(m, "__version__", "0.1") < 0 ||
      PyModule_AddStringConstant(m, "known_backends", trw_known_backends()) < 0 ||
      ready_all(m) < 0 || add_parts(m) < 0 || add_package_path(m) < 0) {
    Py_DECREF(m);
    return NULL;
  }
  return m;
}

PyObject *trw__py_module(void)
{
  if (!the_module) {
    the_module = create_module();
    if (!the_module)
      return NULL;
    PyObject *modules = PyImport_GetModuleDict();
    if (!PyDict_GetItemString(modules, "torchrw"))
      PyDict_SetItemString(modules, "torchrw", the_module);
  }
  Py_INCREF(the_module);
  return the_module;
}

