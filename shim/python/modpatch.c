/*
 * modpatch.c - Python module rewriters.  For the length of a trace, the
 * forward of a registered nn.Module class (and of its subclasses, the
 * nearest registered class winning) is replaced by a callable that builds
 * Wrapper(module, cfg, **kwargs) once per instance and runs the wrapper
 * instead.  When the wrapper calls the module it wraps, the module's own
 * forward runs.  A module rewriter written in C runs in place of forward
 * (shim/torch/pymodule.cpp).
 */
#include <string.h>

#include "glue.h"

typedef struct {
  PyObject_HEAD
  trw__rewriter *rw;
  PyObject *ctx;
  PyObject *origin; /* the class's forward before the patch */
  trw_env env;
  vectorcallfunc vectorcall;
  PyObject *weakrefs;
} ModForward;

/* Per trace: wrappers by module id, and the modules whose wrapper runs. */
static PyObject *wrappers;
static PyObject *inside;

/* Keyword arguments the wrapper accepts; a clear error for required ones
 * nobody gives.  New reference (a dict), or NULL with an exception. */
static PyObject *wrapper_kwargs(trw__rewriter *rw, PyObject *wrapper_cls, PyObject *given)
{
  PyObject *inspect = PyImport_ImportModule("inspect");
  PyObject *sig = inspect ? PyObject_CallMethod(inspect, "signature", "O", wrapper_cls) : NULL;
  PyObject *params = sig ? PyObject_GetAttrString(sig, "parameters") : NULL;
  PyObject *values = params ? PyMapping_Values(params) : NULL;
  PyObject *param_cls = inspect ? PyObject_GetAttrString(inspect, "Parameter") : NULL;
  PyObject *empty = param_cls ? PyObject_GetAttrString(param_cls, "empty") : NULL;
  PyObject *out = values && empty ? PyDict_New() : NULL;
  if (!out) {
    if (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
      /* No signature to read: pass everything. */
      PyErr_Clear();
      out = given && given != Py_None ? PyDict_Copy(given) : PyDict_New();
    }
    goto done;
  }
  int var_kw = 0;
  Py_ssize_t n = PyList_GET_SIZE(values);
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *p = PyList_GET_ITEM(values, i);
    PyObject *kind = PyObject_GetAttrString(p, "kind");
    PyObject *kname = kind ? PyObject_GetAttrString(kind, "name") : NULL;
    const char *k = kname ? PyUnicode_AsUTF8(kname) : "";
    var_kw |= k && strcmp(k, "VAR_KEYWORD") == 0;
    int named = k && (strcmp(k, "POSITIONAL_OR_KEYWORD") == 0 || strcmp(k, "KEYWORD_ONLY") == 0);
    PyObject *name = named ? PyObject_GetAttrString(p, "name") : NULL;
    PyObject *def = named ? PyObject_GetAttrString(p, "default") : NULL;
    /* The first two parameters are (module, cfg). */
    if (name && def && i >= 2) {
      PyObject *v = given && given != Py_None ? PyDict_GetItemWithError(given, name) : NULL;
      if (v) {
        PyDict_SetItem(out, name, v);
      } else if (def == empty && !PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError,
                     "torchrw: module rewriter %s (%s:%d): %R requires keyword "
                     "argument '%U', which register_rewrite_module() does not give",
                     rw->stable, rw->file, rw->line, wrapper_cls, name);
      }
    }
    Py_XDECREF(kind);
    Py_XDECREF(kname);
    Py_XDECREF(name);
    Py_XDECREF(def);
    if (PyErr_Occurred()) {
      Py_CLEAR(out);
      goto done;
    }
  }
  if (var_kw && given && given != Py_None)
    PyDict_Update(out, given);
done:
  Py_XDECREF(inspect);
  Py_XDECREF(sig);
  Py_XDECREF(params);
  Py_XDECREF(values);
  Py_XDECREF(param_cls);
  Py_XDECREF(empty);
  return out;
}

/* ------------------------------------------------------------------------ */
/* What a wrapper changes on the module it wraps (SRCNNWrapper's __init__
 * sets module.img_upsampler), recorded as it is built and put back in
 * reverse when the trace's patches are removed: after the export the
 * user's model computes as before it, under both exporters.  A change is a
 * key of one of the module's dicts (its __dict__, _modules, _parameters,
 * _buffers: where nn.Module.__setattr__ puts things) with its old value,
 * NULL for a key that was absent, in the journal (journal.c). */

enum { NSTATE = 4 };

/* The module's dicts that hold its state, new references; NULL where the
 * module has no such dict. */
static void state_dicts(PyObject *module, PyObject *dicts[NSTATE])
{
  static const char *const inner[] = {"_modules", "_parameters", "_buffers"};
  PyObject *d = PyObject_GetAttrString(module, "__dict__");
  if (!d || !PyDict_Check(d)) {
    PyErr_Clear();
    Py_CLEAR(d);
  }
  dicts[0] = d;
  for (int i = 0; i < NSTATE - 1; i++) {
    PyObject *in = d ? PyDict_GetItemString(d, inner[i]) : NULL;
    dicts[i + 1] = in && PyDict_Check(in) ? Py_NewRef(in) : NULL;
  }
}

/* Records what differs between dict and its copy from before. */
static int record_changes(PyObject *dict, PyObject *before)
{
  PyObject *key, *value;
  Py_ssize_t pos = 0;
  while (PyDict_Next(before, &pos, &key, &value)) {
    PyObject *now = PyDict_GetItemWithError(dict, key);
    if ((!now && PyErr_Occurred()) ||
        (now != value &&
         trw__py_journal_add(TRW__PY_UNTIL_TRACE, TRW__PY_UNDO_ITEM, dict, key, value) != 0))
      return -1;
  }
  pos = 0;
  while (PyDict_Next(dict, &pos, &key, &value)) {
    int had = PyDict_Contains(before, key);
    if (had < 0 ||
        (!had && trw__py_journal_add(TRW__PY_UNTIL_TRACE, TRW__PY_UNDO_ITEM, dict, key, NULL) != 0))
      return -1;
  }
  return 0;
}

static PyObject *build_wrapper(ModForward *f, PyObject *module);

/* The wrapper of module, with what building it changed on the module
 * recorded. */
static PyObject *make_wrapper(ModForward *f, PyObject *module)
{
  PyObject *dicts[NSTATE], *before[NSTATE] = {NULL};
  int ok = 1;
  state_dicts(module, dicts);
  for (int i = 0; ok && i < NSTATE; i++)
    ok = !dicts[i] || (before[i] = PyDict_Copy(dicts[i])) != NULL;
  PyObject *w = ok ? build_wrapper(f, module) : NULL;
  /* Also when building it failed: what it changed before it raised. */
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  for (int i = 0; ok && i < NSTATE; i++)
    if (dicts[i] && record_changes(dicts[i], before[i]) != 0) {
      Py_CLEAR(w);
      ok = 0;
    }
  if (ok || type)
    PyErr_Restore(type, value, tb);
  else {
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
  }
  for (int i = 0; i < NSTATE; i++) {
    Py_XDECREF(before[i]);
    Py_XDECREF(dicts[i]);
  }
  return w;
}

static PyObject *build_wrapper(ModForward *f, PyObject *module)
{
  PyObject *payload = (PyObject *)f->rw->fn;
  PyObject *cls = PyTuple_GET_ITEM(payload, TRW__PY_FN);
  PyObject *kw = wrapper_kwargs(f->rw, cls, PyTuple_GET_ITEM(payload, TRW__PY_KWARGS));
  if (!kw)
    return NULL;
  PyObject *cfg = PyObject_GetAttrString(f->ctx, "cfg");
  PyObject *args = cfg ? PyTuple_Pack(2, module, cfg) : NULL;
  PyObject *w = args ? PyObject_Call(cls, args, kw) : NULL;
  Py_XDECREF(cfg);
  Py_XDECREF(args);
  Py_DECREF(kw);
  return w;
}

static PyObject *modforward_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                       PyObject *kwnames)
{
  ModForward *f = (ModForward *)self;
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 1)
    return PyErr_Format(PyExc_TypeError, "torchrw: %s: forward called without a module",
                        f->rw->stable);
  PyObject *module = args[0];
  PyObject *key = PyLong_FromVoidPtr(module);
  if (!key)
    return NULL;
  PyObject *r = NULL;
  /* Not tracing on this thread, or the wrapper calls the module it wraps:
   * run the module's own forward. */
  if (!wrappers || !trw__rewriting_here() || PyDict_Contains(inside, key) == 1) {
    Py_DECREF(key);
    return PyObject_Vectorcall(f->origin, args, nargsf, kwnames);
  }
  if (f->rw->lang == TRW__LANG_C) {
    Py_DECREF(key);
    /* C module rewriters take positional arguments only. */
    if (kwnames && PyTuple_GET_SIZE(kwnames))
      return PyObject_Vectorcall(f->origin, args, nargsf, kwnames);
    trw__py_hit(f->rw);
    return trw__py_module_call_c(f->rw, &f->env, module, f->origin, args + 1, nargs - 1);
  }
  if (trw__py_context_push(f->ctx) < 0) {
    Py_DECREF(key);
    return NULL;
  }
  PyObject *w = PyDict_GetItemWithError(wrappers, key);
  Py_XINCREF(w);
  if (!w && !PyErr_Occurred()) {
    w = make_wrapper(f, module);
    if (w && PyDict_SetItem(wrappers, key, w) != 0)
      Py_CLEAR(w);
  }
  if (w && PyDict_SetItem(inside, key, Py_True) == 0) {
    trw__py_hit(f->rw);
    r = PyObject_Vectorcall(w, args + 1, (size_t)(nargs - 1), kwnames);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PyDict_DelItem(inside, key) != 0)
      PyErr_Clear();
    PyErr_Restore(type, value, tb);
  }
  trw__py_context_pop();
  Py_XDECREF(w);
  Py_DECREF(key);
  return r ? r : trw__py_rewriter_failed(f->rw);
}

static void modforward_dealloc(ModForward *f)
{
  if (f->weakrefs)
    PyObject_ClearWeakRefs((PyObject *)f);
  Py_XDECREF(f->ctx);
  Py_XDECREF(f->origin);
  Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyObject *modforward_getattro(ModForward *f, PyObject *name)
{
  return trw__py_patch_getattr((PyObject *)f, name, f->origin);
}

/* On a thread that does not trace, Cls.forward and module.forward are the
 * original's: TorchScript compiles that, pickle finds it by name. */
static PyObject *modforward_get(PyObject *self, PyObject *obj, PyObject *type)
{
  return trw__py_patch_bind(self, obj, type, ((ModForward *)self)->origin);
}

static PyObject *modforward_reduce(ModForward *f, PyObject *proto)
{
  return trw__py_stand_in_reduce(f->origin, proto);
}

static PyMethodDef modforward_methods[] = {
    {"__reduce_ex__", (PyCFunction)modforward_reduce, METH_O, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ModForwardType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.WrappedForward",
    .tp_basicsize = sizeof(ModForward),
    .tp_dealloc = (destructor)modforward_dealloc,
    .tp_getattro = (getattrofunc)modforward_getattro,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(ModForward, vectorcall),
    .tp_weaklistoffset = offsetof(ModForward, weakrefs),
    .tp_methods = modforward_methods,
    .tp_descr_get = modforward_get,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "The forward of a module class whose instances a torchrw wrapper replaces.",
};

/* ------------------------------------------------------------------------ */

typedef struct {
  trw__rewriter *rw;
  PyObject *cls;
} Target;

/* cls and every subclass, depth first, each once. */
static int collect(PyObject *cls, PyObject *seen, PyObject *out)
{
  if (PySet_Contains(seen, cls) == 1)
    return 0;
  if (PySet_Add(seen, cls) != 0 || PyList_Append(out, cls) != 0)
    return -1;
  PyObject *subs = PyObject_CallMethod(cls, "__subclasses__", NULL);
  if (!subs)
    return -1;
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(subs); i++)
    if (collect(PyList_GET_ITEM(subs, i), seen, out) != 0) {
      Py_DECREF(subs);
      return -1;
    }
  Py_DECREF(subs);
  return 0;
}

/* The registered target nearest to cls in its MRO. */
static Target *nearest(PyObject *cls, Target *targets, size_t n)
{
  PyObject *mro = ((PyTypeObject *)cls)->tp_mro;
  for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro); i++)
    for (size_t t = 0; t < n; t++)
      if (PyTuple_GET_ITEM(mro, i) == targets[t].cls)
        return &targets[t];
  return NULL;
}

static int patch_class(Target *t, PyObject *cls, const trw_env *env, PyObject *forward_name)
{
  PyObject *origin = PyObject_GetAttr(cls, forward_name);
  if (!origin)
    return -1;
  ModForward *f = PyObject_New(ModForward, &ModForwardType);
  if (!f) {
    Py_DECREF(origin);
    return -1;
  }
  f->rw = t->rw;
  f->origin = origin;
  f->env = *env;
  f->vectorcall = modforward_vectorcall;
  f->weakrefs = NULL;
  f->ctx = trw__py_context_new(t->rw, env, origin);
  int rc = f->ctx ? trw__py_setattr_logged(cls, forward_name, (PyObject *)f) : -1;
  Py_DECREF(f);
  return rc;
}

/* The targets of this trace (classes resolved so far). */
static Target *targets;
static size_t ntargets, captargets;

/* Patches forward of every class under the targets from index `from` on:
 * registered classes always, subclasses only where they define their own
 * forward (the others inherit the patched one).  The nearest registered
 * class wins.  0, or -1 with an exception set. */
static int patch_from(size_t from, const trw_env *env)
{
  PyObject *forward_name = PyUnicode_FromString("forward");
  int rc = forward_name ? 0 : -1;
  if (rc == 0 && !wrappers) {
    wrappers = PyDict_New();
    inside = PyDict_New();
    rc = wrappers && inside ? 0 : -1;
  }
  PyObject *seen = rc == 0 ? PySet_New(NULL) : NULL;
  PyObject *all = rc == 0 ? PyList_New(0) : NULL;
  for (size_t t = from; rc == 0 && t < ntargets; t++)
    rc = seen && all ? collect(targets[t].cls, seen, all) : -1;
  for (Py_ssize_t i = 0; rc == 0 && all && i < PyList_GET_SIZE(all); i++) {
    PyObject *cls = PyList_GET_ITEM(all, i);
    Target *t = nearest(cls, targets, ntargets);
    PyObject *own = PyDict_GetItemWithError(((PyTypeObject *)cls)->tp_dict, forward_name);
    if (own && Py_IS_TYPE(own, &ModForwardType))
      continue; /* patched already, by a target resolved earlier */
    if (t && (t->cls == cls || own))
      rc = patch_class(t, cls, env, forward_name);
  }
  Py_XDECREF(seen);
  Py_XDECREF(all);
  Py_XDECREF(forward_name);
  return rc;
}

/* Resolves r's class and adds it to the targets: 0 (added, or reported
 * not found), 1 when its module is not imported yet, -1 with an
 * exception set. */
static int add_target(trw__rewriter *r)
{
  PyObject *cls = NULL;
  int rc = trw__py_target_class(r, "not a class", &cls);
  if (rc != 0)
    return rc > 0 ? 1 : 0;
  if (ntargets == captargets) {
    size_t cap = captargets ? captargets * 2 : 16;
    Target *grown = PyMem_Realloc(targets, cap * sizeof *grown);
    if (!grown) {
      Py_DECREF(cls);
      PyErr_NoMemory();
      return -1;
    }
    targets = grown;
    captargets = cap;
  }
  targets[ntargets++] = (Target){r, cls};
  return 0;
}

/* A module rewriter whose class was imported during the trace. */
static int patch_late(void *arg, const trw_env *env)
{
  trw__rewriter *r = arg;
  size_t from = ntargets;
  int rc = add_target(r);
  return rc == 0 && ntargets > from ? patch_from(from, env) : rc;
}

int trw__py_patch_modules(const trw_env *env)
{
  size_t n;
  trw__rewriter *const *plan = trw__plan_winners(env, TRW_KIND_MODULE, &n);
  int rc = plan ? 0 : (PyErr_NoMemory(), -1);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    trw__rewriter *r = plan[i];
    rc = add_target(r);
    if (rc == 1)
      rc = trw__py_defer(r->name, r->stable, patch_late, r, env, TRW__PY_UNTIL_TRACE);
  }
  return rc == 0 && ntargets > 0 ? patch_from(0, env) : rc;
}

void trw__py_unpatch_modules(void)
{
  /* The forwards, and what the wrappers changed on their modules, are in
   * the journal (trw__py_unpatch_functions unwinds it). */
  Py_CLEAR(wrappers);
  Py_CLEAR(inside);
  while (ntargets > 0)
    Py_DECREF(targets[--ntargets].cls);
}

int trw__py_modpatch_ready(PyObject *m)
{
  (void)m;
  return PyType_Ready(&ModForwardType);
}
