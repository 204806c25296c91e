/*
 * symbolic.c - symbolic rewriters.  A rewriter of a torch operator
 * ("squeeze", "aten::layer_norm") is registered with torch.onnx as a custom
 * symbolic at every opset torch knows, so that it wins whatever opset the
 * export uses; ctx.origin_func is torch's own symbolic at the export's
 * opset.  A rewriter of a custom torch.autograd.Function (full path)
 * replaces the class's `symbolic`; ctx.origin_func is the one it had.
 * Everything is given back by trw__py_uninstall_symbolics.
 */
#include <string.h>

#include "../adapter/adapter.h"
#include "glue.h"

trw__py_symbolic_c_fn trw__py_symbolic_c_call;

typedef struct {
  PyObject_HEAD
  trw__rewriter *rw;
  PyObject *qualname; /* "aten::squeeze" for operators, NULL for Functions */
  PyObject *origin;   /* Functions: the symbolic the class had (or None) */
  PyObject *contexts; /* opset -> Context */
  int fx;             /* a translation on torch.export: origin is the exporter's */
  PyObject *route;    /* torch.export, Functions: torchrw's operator for apply */
  PyObject *fn;       /* a Python rewriter, its inputs parsed by arg_descriptors */
  trw_env env;
  vectorcallfunc vectorcall;
} SymFn;

static int export_opset(void)
{
  PyObject *mod = PyImport_ImportModule(trw__adapter_get()->onnx_globals);
  PyObject *g = mod ? PyObject_GetAttrString(mod, "GLOBALS") : NULL;
  PyObject *v = g ? PyObject_GetAttrString(g, "export_onnx_opset_version") : NULL;
  long opset = v ? PyLong_AsLong(v) : -1;
  Py_XDECREF(mod);
  Py_XDECREF(g);
  Py_XDECREF(v);
  PyErr_Clear();
  return opset > 0 ? (int)opset : 0;
}

/* torch's own symbolic for qualname at opset, or None. */
static PyObject *torch_symbolic(PyObject *qualname, int opset)
{
  PyObject *reg = PyImport_ImportModule(trw__adapter_get()->onnx_registration);
  PyObject *registry = reg ? PyObject_GetAttrString(reg, "registry") : NULL;
  PyObject *group = registry ? PyObject_CallMethod(registry, "get_function_group", "O", qualname) : NULL;
  PyObject *functions = group && group != Py_None ? PyObject_GetAttrString(group, "_functions") : NULL;
  PyObject *base = functions ? PyObject_GetAttrString(functions, "_base") : NULL;
  PyObject *dispatch = reg ? PyObject_GetAttrString(reg, "_dispatch_opset_version") : NULL;
  PyObject *version = base && dispatch ? PyObject_CallFunction(dispatch, "iO", opset, base) : NULL;
  PyObject *fn = version && version != Py_None ? PyDict_GetItemWithError(base, version) : NULL;
  Py_XINCREF(fn);
  Py_XDECREF(reg);
  Py_XDECREF(registry);
  Py_XDECREF(group);
  Py_XDECREF(functions);
  Py_XDECREF(base);
  Py_XDECREF(dispatch);
  Py_XDECREF(version);
  PyErr_Clear();
  if (!fn) {
    Py_INCREF(Py_None);
    fn = Py_None;
  }
  return fn;
}

/* The Context for this call: per opset, since origin_func depends on it.
 * *env_out receives the call's environment. */
static PyObject *context_for(SymFn *s, trw_env *env_out)
{
  /* torch.export's exporter leaves torch.onnx's TorchScript globals alone. */
  int opset = s->fx ? 0 : export_opset();
  *env_out = s->env;
  env_out->opset = opset ? opset : s->env.opset;
  PyObject *key = PyLong_FromLong(opset);
  if (!key)
    return NULL;
  PyObject *ctx = PyDict_GetItemWithError(s->contexts, key);
  if (ctx) {
    Py_DECREF(key);
    return ctx;
  }
  trw_env env = s->env;
  env.opset = opset ? opset : env.opset;
  int torchscript = s->qualname && !s->fx;
  PyObject *origin = torchscript ? torch_symbolic(s->qualname, env.opset) : s->origin;
  if (torchscript && !origin) {
    Py_DECREF(key);
    return NULL;
  }
  if (!torchscript)
    Py_XINCREF(origin);
  ctx = trw__py_context_new(s->rw, &env, origin);
  Py_XDECREF(origin);
  if (ctx && PyDict_SetItem(s->contexts, key, ctx) != 0)
    Py_CLEAR(ctx);
  Py_XDECREF(ctx); /* the dict holds it */
  Py_DECREF(key);
  return ctx;
}

static PyObject *symfn_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames)
{
  SymFn *s = (SymFn *)self;
  trw_env env;
  PyObject *ctx = context_for(s, &env);
  if (!ctx || trw__py_context_push(ctx) < 0)
    return NULL;
  trw__py_hit(s->rw);
  PyObject *r;
  if (s->rw->lang == TRW__LANG_PYTHON) {
    r = PyObject_Vectorcall(s->fn, args, nargsf, kwnames);
    if (!r)
      trw__py_rewriter_failed(s->rw);
  } else if (trw__py_symbolic_c_call) {
    r = trw__py_symbolic_c_call(s->rw, ctx, &env, args, PyVectorcall_NARGS(nargsf), kwnames);
  } else {
    r = trw__py_raise("%s: C symbolic rewriters are not available", s->rw->stable);
  }
  trw__py_context_pop();
  return r;
}

static void symfn_dealloc(SymFn *s)
{
  Py_XDECREF(s->qualname);
  Py_XDECREF(s->origin);
  Py_XDECREF(s->contexts);
  Py_XDECREF(s->route);
  Py_XDECREF(s->fn);
  Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *symfn_repr(SymFn *s)
{
  return PyUnicode_FromFormat("<torchrw symbolic %s (%s:%d)>", s->rw->stable, s->rw->file,
                              s->rw->line);
}

static PyTypeObject SymFnType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.Symbolic",
    .tp_basicsize = sizeof(SymFn),
    .tp_dealloc = (destructor)symfn_dealloc,
    .tp_repr = (reprfunc)symfn_repr,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(SymFn, vectorcall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "An ONNX symbolic replaced by a torchrw rewriter.",
};

/* Python rewriter rw's function, with its inputs parsed as torch's own
 * symbolics parse theirs (torch.onnx's parse_args) when it gave
 * arg_descriptors.  New reference, or NULL with an exception set. */
static PyObject *python_symbolic(trw__rewriter *rw)
{
  PyObject *fn = PyTuple_GET_ITEM((PyObject *)rw->fn, TRW__PY_FN);
  PyObject *descriptors = PyTuple_GET_ITEM((PyObject *)rw->fn, TRW__PY_DESCRIPTORS);
  if (descriptors == Py_None)
    return Py_NewRef(fn);
  PyObject *helper = PyImport_ImportModule(trw__adapter_get()->symbolic_helper);
  PyObject *parse = helper ? PyObject_GetAttrString(helper, "parse_args") : NULL;
  PyObject *deco = parse ? PyObject_CallObject(parse, descriptors) : NULL;
  PyObject *r = deco ? PyObject_CallOneArg(deco, fn) : NULL;
  Py_XDECREF(helper);
  Py_XDECREF(parse);
  Py_XDECREF(deco);
  return r;
}

static SymFn *symfn_new(trw__rewriter *rw, const trw_env *env, PyObject *qualname,
                        PyObject *origin)
{
  SymFn *s = PyObject_New(SymFn, &SymFnType);
  if (!s)
    return NULL;
  s->rw = rw;
  s->qualname = qualname;
  Py_XINCREF(qualname);
  s->origin = origin;
  Py_XINCREF(origin);
  s->contexts = PyDict_New();
  s->fx = 0;
  s->route = NULL;
  s->env = *env;
  s->vectorcall = symfn_vectorcall;
  s->fn = rw->lang == TRW__LANG_PYTHON ? python_symbolic(rw) : NULL;
  if (!s->contexts || (rw->lang == TRW__LANG_PYTHON && !s->fn)) {
    Py_DECREF(s);
    return NULL;
  }
  return s;
}

/* ------------------------------------------------------------------------ */
/* Installation                                                              */

/* What is installed is in the symbolics' journal (journal.c): a Function
 * class's own `symbolic` as it was, and per operator and opset a call of
 * the registry's unregister. */
static PyObject *symbolic_name, *unregister_name; /* interned, from _ready */

void trw__py_uninstall_symbolics(void)
{
  trw__py_drop_deferred(TRW__PY_UNTIL_SYMBOLICS);
  trw__py_journal_unwind(TRW__PY_UNTIL_SYMBOLICS);
}

/* "squeeze", "::squeeze" -> "aten::squeeze"; "ns::op" as is; NULL for a
 * dotted path (an autograd Function). */
static PyObject *operator_name(const char *name)
{
  if (strncmp(name, "::", 2) == 0)
    return PyUnicode_FromFormat("aten%s", name);
  if (strstr(name, "::"))
    return PyUnicode_FromString(name);
  if (!strchr(name, '.'))
    return PyUnicode_FromFormat("aten::%s", name);
  return NULL;
}

static int is_operator(trw__rewriter *r)
{
  if (r->lang == TRW__LANG_PYTHON)
    return PyTuple_GET_ITEM((PyObject *)r->fn, TRW__PY_IS_PYTORCH) == Py_True ||
           strstr(r->name, "::") != NULL;
  return !strchr(r->name, '.') || strstr(r->name, "::") != NULL;
}

/* The newest opset torch's TorchScript exporter knows. */
static int max_opset(void)
{
  const trw__adapter *a = trw__adapter_get();
  PyObject *mod = PyImport_ImportModule(a->onnx_constants);
  PyObject *v = mod ? PyObject_GetAttrString(mod, a->max_opset_attr) : NULL;
  long opset = v ? PyLong_AsLong(v) : -1;
  Py_XDECREF(v);
  Py_XDECREF(mod);
  if (opset < a->min_opset) {
    PyErr_Clear();
    trw__log(TRW__LOG_WARN, "cannot read %s.%s; registering symbolics up to opset 17",
             a->onnx_constants, a->max_opset_attr);
    opset = 17;
  }
  return (int)opset;
}

static int install_operator(trw__rewriter *r, const trw_env *env, PyObject *registry)
{
  PyObject *qual = operator_name(r->name);
  if (!qual) {
    trw__py_raise("symbolic rewriter %s (%s:%d): '%s' is not an operator name; "
                  "pass is_pytorch=False for an autograd Function",
                  r->stable, r->file, r->line, r->name);
    return -1;
  }
  SymFn *s = symfn_new(r, env, qual, NULL);
  int rc = s ? 0 : -1;
  /* Every opset torch knows: a custom symbolic wins only at its own. */
  int newest = rc == 0 ? max_opset() : 0; /* max_opset clears errors: not after one */
  for (int opset = trw__adapter_get()->min_opset; rc == 0 && opset <= newest; opset++) {
    PyObject *res = PyObject_CallMethod(registry, "register", "OiOO", qual, opset,
                                        (PyObject *)s, Py_True);
    PyObject *undo = res ? Py_BuildValue("(Oi)", qual, opset) : NULL;
    rc = undo && trw__py_journal_add(TRW__PY_UNTIL_SYMBOLICS, TRW__PY_UNDO_CALL, registry,
                                     unregister_name, undo) == 0
             ? 0
             : -1;
    Py_XDECREF(undo);
    Py_XDECREF(res);
  }
  Py_XDECREF(s);
  Py_DECREF(qual);
  return rc;
}

/* Replaces the Function class's symbolic: 0 (or reported not found), 1
 * when its module is not imported yet, -1 with an exception set. */
static int install_function_class(void *arg, const trw_env *env)
{
  trw__rewriter *r = arg;
  PyObject *cls = NULL;
  int found = trw__py_target_class(r, "not an autograd Function class", &cls);
  if (found != 0)
    return found > 0 ? 1 : 0;
  PyObject *own = PyDict_GetItemString(((PyTypeObject *)cls)->tp_dict, "symbolic");
  PyObject *origin = PyObject_GetAttrString(cls, "symbolic");
  if (!origin)
    PyErr_Clear();
  SymFn *s = symfn_new(r, env, NULL, origin ? origin : Py_None);
  PyObject *sm = s ? PyStaticMethod_New((PyObject *)s) : NULL;
  int rc = sm && trw__py_journal_add(TRW__PY_UNTIL_SYMBOLICS, TRW__PY_UNDO_ATTR, cls,
                                     symbolic_name, own) == 0
               ? 0
               : -1;
  if (rc == 0 && PyObject_SetAttr(cls, symbolic_name, sm) != 0) {
    trw__py_journal_drop_last(TRW__PY_UNTIL_SYMBOLICS);
    rc = -1;
  }
  Py_XDECREF(sm);
  Py_XDECREF(s);
  Py_XDECREF(origin);
  Py_DECREF(cls);
  return rc;
}

/* Installs every selected symbolic rewriter: 0, 1 when torch.onnx is not
 * imported yet (nothing is installed: a process that never exports to ONNX
 * never imports it), -1 with an exception set (nothing stays installed). */
static int install_all(void *arg, const trw_env *env)
{
  (void)arg;
  PyObject *name = PyUnicode_FromString(trw__adapter_get()->onnx_registration);
  PyObject *reg = name ? PyImport_GetModule(name) : NULL;
  Py_XDECREF(name);
  if (!reg)
    return PyErr_Occurred() ? -1 : 1;
  PyObject *registry = PyObject_GetAttrString(reg, "registry");
  Py_DECREF(reg);
  if (!registry)
    return -1;
  size_t n;
  trw__rewriter *const *plan = trw__plan_winners(env, TRW_KIND_SYMBOLIC, &n);
  int rc = plan ? 0 : (PyErr_NoMemory(), -1);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    trw__rewriter *r = plan[i];
    if (is_operator(r))
      rc = install_operator(r, env, registry);
    else if ((rc = install_function_class(r, env)) == 1)
      rc = trw__py_defer(r->name, r->stable, install_function_class, r, env,
                         TRW__PY_UNTIL_SYMBOLICS);
  }
  Py_DECREF(registry);
  if (rc != 0)
    trw__py_journal_unwind(TRW__PY_UNTIL_SYMBOLICS);
  return rc;
}

int trw__py_install_symbolics(const trw_env *env)
{
  trw__py_uninstall_symbolics();
  int rc = install_all(NULL, env);
  if (rc == 1) {
    char path[256];
    trw__fmt(path, sizeof path, "%s.registry", trw__adapter_get()->onnx_registration);
    rc = trw__py_defer(path, NULL, install_all, NULL, env, TRW__PY_UNTIL_SYMBOLICS);
  }
  if (rc != 0) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    trw__py_uninstall_symbolics();
    PyErr_Restore(type, value, tb);
  }
  return rc;
}

/* ------------------------------------------------------------------------ */
/* torch.export's exporter: symbolics as translations                        */

/* torchrw._onnx_translation (shim/export/onnx_translation.py).  Borrowed
 * reference, or NULL with an exception set. */
static PyObject *translation_module(void)
{
  return trw__py_embedded("onnx_translation");
}

/* Adds to table the translation of operator rewriter r's overloads; 0,
 * or -1 with an exception set. */
static int translate_operator(PyObject *mod, PyObject *table, trw__rewriter *r,
                              const trw_env *env)
{
  PyObject *qual = operator_name(r->name);
  PyObject *ovs = qual ? PyObject_CallMethod(mod, "overloads", "O", qual) : NULL;
  int rc = ovs ? 0 : -1;
  for (Py_ssize_t k = 0; rc == 0 && k < PyList_GET_SIZE(ovs); k++) {
    PyObject *ov = PyList_GET_ITEM(ovs, k);
    PyObject *origin = PyObject_CallMethod(mod, "origin", "Oi", ov, env->opset);
    SymFn *s = origin ? symfn_new(r, env, qual, origin) : NULL;
    if (s)
      s->fx = 1;
    PyObject *tr = s ? PyObject_CallMethod(mod, "translator", "OOi", ov, (PyObject *)s, env->opset)
                     : NULL;
    rc = tr ? PyDict_SetItem(table, ov, tr) : -1;
    Py_XDECREF(tr);
    Py_XDECREF(s);
    Py_XDECREF(origin);
  }
  Py_XDECREF(ovs);
  Py_XDECREF(qual);
  return rc;
}

/* The same for a Function class's rewriter: the class's apply is routed
 * through torchrw's operator for the trace (a logged patch), whose
 * translation the symbolic is.  A class not imported is left alone (the
 * model that would use it was built without it). */
/* Function symbolics whose class is imported during the capture, kept
 * alive until the export ends (the deferred entries point at them). */
static PyObject *late_functions;

/* Routes cls.apply through torchrw's operator for it, whose translation is
 * s; s's origin becomes the class's own symbolic. */
static int route_function(SymFn *s, PyObject *cls)
{
  PyObject *origin = PyObject_GetAttrString(cls, "symbolic");
  if (!origin) {
    PyErr_Clear();
    origin = Py_NewRef(Py_None);
  } else if (Py_IS_TYPE(origin, &SymFnType)) {
    /* Still replaced for a TorchScript export: the class's own is behind. */
    PyObject *own = ((SymFn *)origin)->origin ? ((SymFn *)origin)->origin : Py_None;
    Py_SETREF(origin, Py_NewRef(own));
  }
  Py_XSETREF(s->origin, origin);
  PyObject *mod = translation_module();
  PyObject *apply = mod ? PyObject_CallMethod(mod, "routed_apply", "OO", cls, s->route) : NULL;
  PyObject *name = PyUnicode_FromString("apply");
  int rc = apply && name ? trw__py_setattr_logged(cls, name, apply) : -1;
  Py_XDECREF(name);
  Py_XDECREF(apply);
  return rc;
}

/* A deferred Function symbolic: its class was imported during the capture. */
static int route_late(void *arg, const trw_env *env)
{
  (void)env;
  SymFn *s = arg;
  PyObject *cls = NULL;
  int found = trw__py_target_class(s->rw, "not an autograd Function class", &cls);
  if (found != 0)
    return found > 0 ? 1 : 0;
  int rc = route_function(s, cls);
  Py_DECREF(cls);
  return rc;
}

/* torch.export runs a Function's forward, so nothing of it would be left in
 * the program: its apply is routed through an operator of torchrw's own
 * (onnx_translation.function_op, one per rewriter's target path, defined
 * before the exporter reads its translation table), which the symbolic
 * translates.  A class not imported yet is routed when it is. */
static int translate_function(PyObject *mod, PyObject *table, trw__rewriter *r,
                              const trw_env *env)
{
  PyObject *op = PyObject_CallMethod(mod, "function_op", "s", r->name);
  SymFn *s = op ? symfn_new(r, env, NULL, Py_None) : NULL;
  if (s) {
    s->fx = 1;
    s->route = Py_NewRef(op);
  }
  PyObject *tr = s ? PyObject_CallMethod(mod, "function_translator", "OOi", op, (PyObject *)s,
                                         env->opset)
                   : NULL;
  int rc = tr ? PyDict_SetItem(table, op, tr) : -1;
  PyObject *cls = NULL;
  int found = rc == 0 ? trw__py_target_class(r, "not an autograd Function class", &cls) : -1;
  if (rc == 0 && found == 0) {
    rc = route_function(s, cls);
  } else if (rc == 0 && found == 1) {
    if (!late_functions)
      late_functions = PyList_New(0);
    rc = late_functions && PyList_Append(late_functions, (PyObject *)s) == 0
             ? trw__py_defer(r->name, r->stable, route_late, s, env, TRW__PY_UNTIL_TRACE)
             : -1;
  }
  Py_XDECREF(cls);
  Py_XDECREF(tr);
  Py_XDECREF(s);
  Py_XDECREF(op);
  return rc;
}

void trw__py_translation_done(void)
{
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyObject *mod = translation_module();
  PyObject *r = mod ? PyObject_CallMethod(mod, "forget_calls", NULL) : NULL;
  Py_XDECREF(r);
  Py_CLEAR(late_functions);
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
}

PyObject *trw__py_translation_table(const trw_env *selecting, int opset)
{
  trw_env build = *selecting;
  build.opset = opset;
  const trw_env *env = &build;
  PyObject *table = PyDict_New();
  if (!table)
    return NULL;
  size_t n;
  trw__rewriter *const *plan = trw__plan_winners(selecting, TRW_KIND_SYMBOLIC, &n);
  int rc = plan ? 0 : (PyErr_NoMemory(), -1);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    trw__rewriter *r = plan[i];
    PyObject *mod = translation_module();
    rc = !mod ? -1
         : is_operator(r) ? translate_operator(mod, table, r, env)
                          : translate_function(mod, table, r, env);
  }
  if (rc != 0)
    Py_CLEAR(table);
  return table;
}

int trw__py_symbolic_ready(PyObject *m)
{
  (void)m;
  if ((!symbolic_name && !(symbolic_name = PyUnicode_InternFromString("symbolic"))) ||
      (!unregister_name && !(unregister_name = PyUnicode_InternFromString("unregister"))))
    return -1;
  return PyType_Ready(&SymFnType);
}
