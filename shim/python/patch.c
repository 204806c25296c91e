/*
 * patch.c - Python function rewriters: for the length of a trace, the
 * function or method at a dotted path (and every module-level alias of a
 * function, from `from pkg.ops import decode`) is replaced by a callable
 * that puts the rewriter's context on the thread's stack and calls the
 * rewriter with the caller's own arguments.
 */
#include <stdlib.h>
#include <string.h>

#include "glue.h"

/* ------------------------------------------------------------------------ */
/* The replacement callable                                                  */

typedef struct {
  PyObject_HEAD
  PyObject *fn;     /* the rewriter */
  PyObject *ctx;    /* its Context */
  PyObject *origin; /* what it replaces, for threads that are not tracing */
  trw__rewriter *rw;
  int builtin;      /* origin is C (torch's operators and Tensor methods) */
  int model_only;   /* applies to calls from the model only (below) */
  vectorcallfunc vectorcall;
  PyObject *weakrefs; /* TorchScript caches compiled functions by weak reference */
} Patched;

/* ------------------------------------------------------------------------ */
/* Calls from the model, calls from the exporter                             */

/* torch's own machinery of capture and export: its modules (under torch's
 * package) call torch's public functions too, on the model's tensors and
 * on fake ones, before, during and after the model runs.  torch.export's
 * exporter calls Tensor.shape hundreds of times for a model that calls it
 * once (fake tensors, meta functions, decompositions, symbolic shapes,
 * the ONNX translation).  The operator kernels apply to what the export
 * records (the bridge's recording()); a Python rewriter of a torch
 * function applies, in the same spirit, to calls the model's code makes
 * (and torch's model library, torch.nn and torch.functional, on its
 * behalf), not to calls from these modules.  A rewriter whose target is
 * itself in one of them (mmdeploy's of torch.onnx's padding helpers) is
 * aimed at the machinery and applies to every call. */
static const char *const machinery[] = {
    "onnx", "export", "_export", "fx", "jit", "_dynamo", "_functorch", "_subclasses",
    "_decomp", "_refs", "_prims", "_prims_common", "_higher_order_ops", "_library",
    "_ops", "_guards", "overrides", "_meta_registrations", "_logging", "_inductor",
    "_dispatch", "utils._pytree", "utils._python_dispatch", "utils._sympy",
};

/* Whether dotted module `mod` (relative to torch: "onnx.utils") is one of
 * the machinery's or inside one. */
static int in_machinery(const char *mod, size_t len)
{
  for (size_t i = 0; i < sizeof machinery / sizeof machinery[0]; i++) {
    size_t n = strlen(machinery[i]);
    if (len >= n && strncmp(mod, machinery[i], n) == 0 && (len == n || mod[n] == '.'))
      return 1;
  }
  return 0;
}

/* A rewriter of a torch function outside the machinery: it applies to the
 * model's calls only. */
static int targets_model_api(const char *name)
{
  if (strncmp(name, "torch.", 6) != 0)
    return 0;
  return !in_machinery(name + 6, strlen(name + 6));
}

/* torch's package directory ("/.../torch/"), once. */
static char torch_dir[1024];

static void find_torch_dir(void)
{
  if (torch_dir[0])
    return;
  PyObject *torch = PyDict_GetItemString(PyImport_GetModuleDict(), "torch"); /* borrowed */
  PyObject *file = torch ? PyObject_GetAttrString(torch, "__file__") : NULL;
  const char *f = file && PyUnicode_Check(file) ? PyUnicode_AsUTF8(file) : NULL;
  const char *slash = f ? strrchr(f, '/') : NULL;
  if (slash && (size_t)(slash - f) + 2 < sizeof torch_dir)
    trw__fmt(torch_dir, sizeof torch_dir, "%.*s/", (int)(slash - f), f);
  Py_XDECREF(file);
  PyErr_Clear();
}

/* Whether the Python code that made the current call is the exporter's:
 * the innermost frame with a file of its own (code that Python generated,
 * "<string>", speaks for its caller) in torch's machinery, or in the
 * ONNX exporter's translation packages (onnxscript, onnx_ir). */
static int called_by_machinery(void)
{
  PyFrameObject *f = PyEval_GetFrame(); /* borrowed */
  Py_XINCREF(f);
  int rc = 0;
  for (int hops = 0; f && hops < 8; hops++) {
    PyCodeObject *code = PyFrame_GetCode(f);
    const char *fn = code ? PyUnicode_AsUTF8(code->co_filename) : NULL;
    Py_XDECREF(code);
    if (fn && fn[0] != '<') {
      size_t tl = strlen(torch_dir);
      if (tl && strncmp(fn, torch_dir, tl) == 0) {
        char mod[512];
        size_t n = 0;
        for (const char *c = fn + tl; *c && n + 1 < sizeof mod; c++)
          mod[n++] = *c == '/' ? '.' : *c;
        mod[n] = '\0';
        if (n > 3 && strcmp(mod + n - 3, ".py") == 0)
          mod[n -= 3] = '\0';
        rc = in_machinery(mod, n);
      } else {
        rc = strstr(fn, "/onnxscript/") != NULL || strstr(fn, "/onnx_ir/") != NULL;
      }
      break;
    }
    PyFrameObject *back = PyFrame_GetBack(f);
    Py_DECREF(f);
    f = back;
  }
  Py_XDECREF(f);
  PyErr_Clear();
  return rc;
}

/* torch's C functions and Tensor methods hand a call to the Python
 * dispatch modes that torch.export traces with (__torch_function__), and
 * those call the function again by its name: the patched one.  A call that
 * comes back that way, while this rewriter is the innermost running one on
 * the thread, is its own origin_func at work and goes to the original: the
 * rewriter runs, and counts, once per call the model makes. */
static int is_c_callable(PyObject *o)
{
  return PyCFunction_Check(o) || Py_IS_TYPE(o, &PyMethodDescr_Type) ||
         Py_IS_TYPE(o, &PyWrapperDescr_Type) || Py_IS_TYPE(o, &PyClassMethodDescr_Type);
}

static PyObject *patched_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames)
{
  Patched *p = (Patched *)self;
  if (!trw__rewriting_here() || (p->builtin && trw__py_context_top(NULL) == p->ctx) ||
      (p->model_only && called_by_machinery()))
    return PyObject_Vectorcall(p->origin, args, nargsf, kwnames);
  if (trw__py_context_push(p->ctx) < 0)
    return NULL;
  PyObject *r = PyObject_Vectorcall(p->fn, args, nargsf, kwnames);
  if (!r || !trw__py_context_top_passed())
    trw__py_hit(p->rw);
  trw__py_context_pop();
  return r ? r : trw__py_rewriter_failed(p->rw);
}

static void patched_dealloc(Patched *p)
{
  if (p->weakrefs)
    PyObject_ClearWeakRefs((PyObject *)p);
  Py_XDECREF(p->fn);
  Py_XDECREF(p->ctx);
  Py_XDECREF(p->origin);
  Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyObject *patched_repr(Patched *p)
{
  return PyUnicode_FromFormat("<torchrw rewriter %s (%s:%d)>", p->rw->stable,
                              p->rw->file, p->rw->line);
}

static PyObject *patched_getattro(Patched *p, PyObject *name)
{
  return trw__py_patch_getattr((PyObject *)p, name, p->origin);
}

static PyObject *patched_get(PyObject *self, PyObject *obj, PyObject *type)
{
  return trw__py_patch_bind(self, obj, type, ((Patched *)self)->origin);
}

static PyObject *patched_reduce(Patched *p, PyObject *proto)
{
  return trw__py_stand_in_reduce(p->origin, proto);
}

static PyMethodDef patched_methods[] = {
    {"__reduce_ex__", (PyCFunction)patched_reduce, METH_O, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject PatchedType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.PatchedFunction",
    .tp_basicsize = sizeof(Patched),
    .tp_dealloc = (destructor)patched_dealloc,
    .tp_repr = (reprfunc)patched_repr,
    .tp_getattro = (getattrofunc)patched_getattro,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Patched, vectorcall),
    .tp_weaklistoffset = offsetof(Patched, weakrefs),
    .tp_methods = patched_methods,
    .tp_descr_get = patched_get,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "A function or method replaced by a torchrw rewriter for a trace.",
};

static PyObject *patched_new(trw__rewriter *r, PyObject *ctx, PyObject *origin)
{
  Patched *p = PyObject_New(Patched, &PatchedType);
  if (!p)
    return NULL;
  p->origin = origin;
  Py_INCREF(origin);
  p->builtin = is_c_callable(origin);
  p->model_only = targets_model_api(r->name);
  if (p->model_only)
    find_torch_dir();
  p->fn = PyTuple_GET_ITEM((PyObject *)r->fn, TRW__PY_FN);
  Py_INCREF(p->fn);
  p->ctx = ctx;
  Py_INCREF(ctx);
  p->rw = r;
  p->vectorcall = patched_vectorcall;
  p->weakrefs = NULL;
  return (PyObject *)p;
}

/* ------------------------------------------------------------------------ */
/* What threads that do not trace see                                        */

/* Python has no per-thread attributes.  A class's patched attribute gives
 * the original on a thread that does not trace (patched_get).  A module
 * whose attribute is patched gets this subclass of ModuleType for as long
 * as the patch: its attribute lookup gives the original there, so pickle
 * (which looks a function up by name and checks it finds the very
 * object), TorchScript (which compiles what `module.name` gives) and
 * everything else see the originals.  The module's dict keeps the patch,
 * for the module's own global lookups on the tracing thread. */
static PyTypeObject *ModuleView;

static PyObject *module_view_getattro(PyObject *m, PyObject *name)
{
  PyObject *v = PyModule_Type.tp_getattro(m, name);
  if (v && Py_IS_TYPE(v, &PatchedType) && !trw__rewriting_here())
    Py_SETREF(v, Py_NewRef(((Patched *)v)->origin));
  return v;
}

static PyType_Slot module_view_slots[] = {
    {Py_tp_getattro, module_view_getattro},
    {Py_tp_doc, "A module with torchrw patches: threads that do not trace see its originals."},
    {0, NULL}};

static PyType_Spec module_view_spec = {"torchrw.PatchedModule", 0, 0, Py_TPFLAGS_DEFAULT,
                                       module_view_slots};

static int module_view_ready(void)
{
  if (ModuleView)
    return 0;
  PyObject *bases = PyTuple_Pack(1, (PyObject *)&PyModule_Type);
  ModuleView = bases ? (PyTypeObject *)PyType_FromSpecWithBases(&module_view_spec, bases) : NULL;
  Py_XDECREF(bases);
  return ModuleView ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* What this activation patched                                              */

/* The function each patched target reaches -> the rewriter that claimed
 * it, so that two dotted paths to one function (a package re-exports a
 * class or a function) get one rewriter: the one trw__rank puts first,
 * whatever the registration order.  A method is (class, name); a module's
 * function is the function itself, which patch_aliases follows into every
 * module that holds it. */
static PyObject *claims;
/* Target and stable name -> the Context patched for it, for get_context(name)
 * from a function that serves several targets. */
static PyObject *contexts;

static PyObject *reach_key(PyObject *owner, PyObject *attr)
{
  if (PyType_Check(owner)) {
    PyObject *id = PyLong_FromVoidPtr(owner);
    PyObject *key = id ? PyTuple_Pack(2, id, attr) : NULL;
    Py_XDECREF(id);
    return key;
  }
  PyObject *value = PyObject_GetAttr(owner, attr);
  PyObject *key = value ? PyLong_FromVoidPtr(value) : NULL;
  Py_XDECREF(value);
  return key;
}

/* 1 when another rewriter already patched what owner.attr reaches (r is
 * then skipped, at info level), 0 when r claims it now, -1 on error. */
static int claimed(trw__rewriter *r, PyObject *owner, PyObject *attr)
{
  if (!claims && !(claims = PyDict_New()))
    return -1;
  PyObject *key = reach_key(owner, attr);
  if (!key)
    return -1;
  PyObject *by = PyDict_GetItemWithError(claims, key);
  int rc = 0;
  if (by) {
    trw__rewriter *w = PyLong_AsVoidPtr(by);
    trw__log(TRW__LOG_INFO,
             "%s (%s:%d) and %s (%s:%d) reach the same function; %s applies", w->stable,
             w->file, w->line, r->stable, r->file, r->line, w->stable);
    rc = 1;
  } else if (!PyErr_Occurred()) {
    PyObject *me = PyLong_FromVoidPtr(r);
    rc = me && PyDict_SetItem(claims, key, me) == 0 ? 0 : -1;
    Py_XDECREF(me);
  } else {
    rc = -1;
  }
  Py_DECREF(key);
  return rc;
}

static int remember_context(trw__rewriter *r, PyObject *ctx)
{
  if (!contexts && !(contexts = PyDict_New()))
    return -1;
  /* The first patch of a target keeps its name (aliases share the context). */
  if (PyDict_GetItemString(contexts, r->name))
    return 0;
  return PyDict_SetItemString(contexts, r->name, ctx) == 0 &&
                 PyDict_SetItemString(contexts, r->stable, ctx) == 0
             ? 0
             : -1;
}

PyObject *trw__py_patched_context(const char *name)
{
  return contexts && name ? PyDict_GetItemString(contexts, name) : NULL;
}

/* ------------------------------------------------------------------------ */
/* Patch records                                                             */

static PyObject *class_attr; /* "__class__" */

/* Gives module m the ModuleView class (logged, so that it gets its own
 * back with the patches).  A module of another class already (a lazy
 * package's) keeps it: threads that do not trace then see the patches of
 * its attributes, as they see those of its dict.  0, or -1 with an
 * exception set. */
static int view_module(PyObject *m)
{
  if (!Py_IS_TYPE(m, &PyModule_Type))
    return 0;
  if (!class_attr && !(class_attr = PyUnicode_InternFromString("__class__")))
    return -1;
  if (trw__py_journal_add(TRW__PY_UNTIL_TRACE, TRW__PY_UNDO_ATTR, m, class_attr,
                          (PyObject *)&PyModule_Type) != 0)
    return -1;
  if (PyObject_SetAttr(m, class_attr, (PyObject *)ModuleView) != 0) {
    trw__py_journal_drop_last(TRW__PY_UNTIL_TRACE);
    return -1;
  }
  return 0;
}

int trw__py_setattr_logged(PyObject *owner, PyObject *attr, PyObject *value)
{
  PyObject *own = NULL; /* new reference, or NULL when the owner has none */
  if (PyType_Check(owner)) {
    own = PyDict_GetItemWithError(((PyTypeObject *)owner)->tp_dict, attr);
    if (!own && PyErr_Occurred())
      return -1;
    Py_XINCREF(own);
  } else if (!(own = PyObject_GetAttr(owner, attr))) {
    PyErr_Clear();
  }
  int rc = trw__py_journal_add(TRW__PY_UNTIL_TRACE, TRW__PY_UNDO_ATTR, owner, attr, own);
  Py_XDECREF(own);
  if (rc != 0)
    return -1;
  if (PyObject_SetAttr(owner, attr, value) != 0) {
    trw__py_journal_drop_last(TRW__PY_UNTIL_TRACE);
    return -1;
  }
  return 0;
}

/* TorchScript compiles a call of torch's own function to its operator by
 * looking the function up by id (torch.jit._builtins._builtin_table).  A
 * patch of one is looked up the same way for as long as it is applied, so
 * that a function that holds it (`from torch import topk`) compiles on a
 * thread that does not trace, as with the original. */
static PyObject *builtin_table, *builtin_keys;

static int mirror_builtin(PyObject *origin, PyObject *replacement)
{
  if (!builtin_table) {
    PyObject *name = PyUnicode_FromString("torch.jit._builtins");
    PyObject *mod = name ? PyImport_GetModule(name) : NULL;
    PyObject *table = mod ? PyObject_GetAttrString(mod, "_builtin_table") : NULL;
    Py_XDECREF(mod);
    Py_XDECREF(name);
    if (!table || !PyDict_Check(table)) {
      /* No TorchScript yet, or its table is built later: nothing to mirror. */
      Py_XDECREF(table);
      PyErr_Clear();
      return 0;
    }
    builtin_table = table;
  }
  if (!builtin_keys && !(builtin_keys = PyList_New(0)))
    return -1;
  PyObject *key = PyLong_FromVoidPtr(origin); /* id() */
  PyObject *op = key ? PyDict_GetItemWithError(builtin_table, key) : NULL;
  Py_XDECREF(key);
  if (!op)
    return PyErr_Occurred() ? -1 : 0;
  PyObject *mine = PyLong_FromVoidPtr(replacement);
  int rc = mine && PyDict_SetItem(builtin_table, mine, op) == 0 &&
                   PyList_Append(builtin_keys, mine) == 0
               ? 0
               : -1;
  Py_XDECREF(mine);
  return rc;
}

static void unmirror_builtins(void)
{
  for (Py_ssize_t i = 0; builtin_keys && i < PyList_GET_SIZE(builtin_keys); i++)
    if (PyDict_DelItem(builtin_table, PyList_GET_ITEM(builtin_keys, i)) != 0)
      PyErr_Clear();
  Py_CLEAR(builtin_keys);
  Py_CLEAR(builtin_table);
}

/* sys.modules as it was when the patches began.  A module imported since
 * (during the trace) may hold a replacement under a name of its own, as
 * `from pkg.ops import decode` binds while decode is patched; the log does
 * not know those names, so they are looked for when the patches end. */
static PyObject *modules_before;

/* Module globals of modules imported during the trace that are a
 * replacement get its original back. */
static void restore_new_aliases(void)
{
  PyObject *now = PyImport_GetModuleDict(); /* borrowed */
  PyObject *name, *mod;
  Py_ssize_t pos = 0;
  while (modules_before && now && PyDict_Next(now, &pos, &name, &mod)) {
    if (!PyModule_Check(mod) || PyDict_GetItemWithError(modules_before, name) == mod)
      continue;
    PyObject *d = PyModule_GetDict(mod), *key, *value;
    Py_ssize_t i = 0;
    while (PyDict_Next(d, &i, &key, &value))
      if (Py_IS_TYPE(value, &PatchedType) && PyDict_SetItem(d, key, ((Patched *)value)->origin) != 0)
        PyErr_Clear(); /* replacing an existing key's value does not fail */
  }
  PyErr_Clear();
  Py_CLEAR(modules_before);
}

void trw__py_unpatch_functions(void)
{
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  Py_CLEAR(claims);
  Py_CLEAR(contexts);
  unmirror_builtins();
  restore_new_aliases();
  trw__py_journal_unwind(TRW__PY_UNTIL_TRACE);
  PyErr_Restore(type, value, tb);
}

/* The descriptor a class finds for attr (its own or inherited). */
static PyObject *class_raw(PyObject *cls, PyObject *attr)
{
  PyObject *mro = ((PyTypeObject *)cls)->tp_mro;
  for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro); i++) {
    PyObject *d = ((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_dict;
    PyObject *v = d ? PyDict_GetItemWithError(d, attr) : NULL;
    if (v)
      return v;
  }
  return NULL;
}

/* Patches owner.attr with rewriter r; *origin_out receives (a new
 * reference to) what the rewriter replaces.  0, 1 when another rewriter
 * has the function already (nothing done), or -1 with an exception. */
static int patch_one(trw__rewriter *r, const trw_env *env, PyObject *owner, const char *attr_s,
                     PyObject **origin_out)
{
  PyObject *attr = PyUnicode_FromString(attr_s);
  if (!attr)
    return -1;
  int rc = claimed(r, owner, attr);
  if (rc != 0) {
    Py_DECREF(attr);
    return rc;
  }
  rc = -1;
  PyObject *origin = NULL, *replacement = NULL, *ctx = NULL;
  PyObject *wrap_with = NULL; /* staticmethod or classmethod */
  if (PyType_Check(owner)) {
    PyObject *raw = class_raw(owner, attr);
    if (raw && PyObject_TypeCheck(raw, &PyClassMethod_Type)) {
      origin = PyObject_GetAttrString(raw, "__func__");
      wrap_with = (PyObject *)&PyClassMethod_Type;
    } else if (raw && PyObject_TypeCheck(raw, &PyStaticMethod_Type)) {
      origin = PyObject_GetAttr(owner, attr);
      wrap_with = (PyObject *)&PyStaticMethod_Type;
    } else if (raw && Py_TYPE(raw)->tp_descr_set && !PyCallable_Check(raw)) {
      /* A property (Tensor.shape): the rewriter is the getter, called
       * with the instance; origin_func(self) reads the original. */
      origin = PyObject_GetAttrString(raw, "__get__");
      wrap_with = (PyObject *)&PyProperty_Type;
    } else {
      origin = PyObject_GetAttr(owner, attr);
    }
  } else {
    origin = PyObject_GetAttr(owner, attr);
  }
  if (!origin)
    goto done;
  ctx = trw__py_context_new(r, env, origin);
  replacement = ctx ? patched_new(r, ctx, origin) : NULL;
  if (replacement && mirror_builtin(origin, replacement) != 0)
    Py_CLEAR(replacement);
  if (replacement && wrap_with) {
    PyObject *w = PyObject_CallOneArg(wrap_with, replacement);
    Py_SETREF(replacement, w);
  }
  if (!replacement || remember_context(r, ctx) != 0 ||
      (PyModule_Check(owner) && view_module(owner) != 0) ||
      trw__py_setattr_logged(owner, attr, replacement) != 0)
    goto done;
  *origin_out = origin;
  Py_INCREF(origin);
  rc = 0;
done:
  Py_XDECREF(attr);
  Py_XDECREF(origin);
  Py_XDECREF(replacement);
  Py_XDECREF(ctx);
  return rc;
}

/* Module-level aliases: every module global that is one of origins[i]
 * gets replacements[i]. */
static int patch_aliases(PyObject **origins, PyObject **replacements, size_t n)
{
  if (n == 0)
    return 0;
  PyObject *mods = PyDict_Values(PyImport_GetModuleDict());
  if (!mods)
    return -1;
  int rc = 0;
  for (Py_ssize_t m = 0; rc == 0 && m < PyList_GET_SIZE(mods); m++) {
    PyObject *mod = PyList_GET_ITEM(mods, m);
    if (!PyModule_Check(mod))
      continue;
    PyObject *d = PyModule_GetDict(mod);
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (rc == 0 && PyDict_Next(d, &pos, &key, &value)) {
      for (size_t i = 0; i < n; i++) {
        if (value != origins[i])
          continue;
        /* Record first (holds old), then replace in place: PyDict_Next
         * allows changing values of existing keys. */
        Py_INCREF(value);
        rc = view_module(mod);
        if (rc == 0)
          rc = trw__py_journal_add(TRW__PY_UNTIL_TRACE, TRW__PY_UNDO_ITEM, d, key, value);
        if (rc == 0)
          rc = PyDict_SetItem(d, key, replacements[i]);
        Py_DECREF(value);
        break;
      }
    }
  }
  Py_DECREF(mods);
  return rc;
}

/* Patches rewriter r's target; an alias of a module-level function in
 * another module is collected into origins/replacements for
 * patch_aliases.  0, 1 when the target's module is not imported yet, -1
 * with an exception set; a target that does not exist is reported. */
static int patch_target(trw__rewriter *r, const trw_env *env, PyObject **origins,
                        PyObject **replacements, size_t *nalias)
{
  PyObject *owner = NULL;
  const char *attr = NULL;
  int rc = trw__py_target(r, &owner, &attr);
  if (rc != 0)
    return rc > 0 ? 1 : 0;
  PyObject *origin = NULL;
  rc = patch_one(r, env, owner, attr, &origin);
  if (rc == 1) {
    Py_DECREF(owner);
    return 0;
  }
  if (rc == 0 && PyModule_Check(owner)) {
    /* Look the replacement up again: it is what aliases get.  From the
     * module's dict: its attribute is the original for a thread that does
     * not trace yet, as this one while it applies the patches. */
    PyObject *rep = PyDict_GetItemString(PyModule_GetDict(owner), attr);
    Py_XINCREF(rep);
    if (rep) {
      origins[*nalias] = origin;
      replacements[(*nalias)++] = rep;
      origin = NULL;
    } else {
      rc = -1;
    }
  }
  Py_XDECREF(origin);
  Py_DECREF(owner);
  return rc;
}

/* A function rewriter whose module was imported during the trace. */
static int patch_late(void *arg, const trw_env *env)
{
  trw__rewriter *r = arg;
  PyObject *origin = NULL, *replacement = NULL;
  size_t nalias = 0;
  int rc = patch_target(r, env, &origin, &replacement, &nalias);
  if (rc == 0 && nalias)
    rc = patch_aliases(&origin, &replacement, nalias);
  Py_XDECREF(origin);
  Py_XDECREF(replacement);
  return rc;
}

/* Strongest claim first (trw__rank), the later registration first among
 * equals: homonyms go to the rewriter selection would pick. */
static int by_claim(const void *a, const void *b)
{
  const trw__rewriter *x = *(trw__rewriter *const *)a, *y = *(trw__rewriter *const *)b;
  int rx = trw__rank(x), ry = trw__rank(y);
  if (rx != ry)
    return ry - rx;
  return x->seq < y->seq ? 1 : x->seq > y->seq ? -1 : 0;
}

int trw__py_patch_functions(const trw_env *env)
{
  size_t n;
  trw__rewriter *const *plan = trw__plan_winners(env, TRW_KIND_FUNCTION, &n);
  PyObject **origins = PyMem_Calloc(n + 1, sizeof *origins);
  PyObject **replacements = PyMem_Calloc(n + 1, sizeof *replacements);
  trw__rewriter **order = PyMem_Calloc(n + 1, sizeof *order);
  size_t nalias = 0, norder = 0;
  int rc = 0;
  Py_XSETREF(modules_before, PyDict_Copy(PyImport_GetModuleDict()));
  if (!plan || !origins || !replacements || !order || !modules_before) {
    if (!PyErr_Occurred())
      PyErr_NoMemory();
    rc = -1;
  }
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (plan[i]->lang == TRW__LANG_PYTHON)
      order[norder++] = plan[i];
  if (norder > 1)
    qsort(order, norder, sizeof *order, by_claim);
  for (size_t i = 0; rc == 0 && i < norder; i++) {
    trw__rewriter *r = order[i];
    rc = patch_target(r, env, origins, replacements, &nalias);
    if (rc == 1)
      rc = trw__py_defer(r->name, r->stable, patch_late, r, env, TRW__PY_UNTIL_TRACE);
  }
  if (rc == 0)
    rc = patch_aliases(origins, replacements, nalias);
  for (size_t i = 0; i < nalias; i++) {
    Py_DECREF(origins[i]);
    Py_DECREF(replacements[i]);
  }
  PyMem_Free(origins);
  PyMem_Free(replacements);
  PyMem_Free(order);
  if (rc != 0)
    trw__py_unpatch_functions();
  return rc;
}

int trw__py_patch_ready(PyObject *m)
{
  (void)m;
  return PyType_Ready(&PatchedType) < 0 || module_view_ready() < 0 ? -1 : 0;
}
