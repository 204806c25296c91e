/*
 * lazy.c - rewriters whose target is in a module that is not imported yet.
 *
 * torchrw never imports a rewriter's target: importing torchvision for a
 * FrozenBatchNorm2d rewriter costs seconds and runs code the user did not
 * ask for.  A target whose module is not in sys.modules is deferred: a
 * finder at the front of sys.meta_path watches the modules on its path,
 * and when one of them finishes importing (during the export, say) the
 * deferred rewriters that wait on it are resolved and applied.  What still
 * waits when its scope ends (the trace for patches, the export for
 * symbolics) is reported as not found.
 *
 * The finder finds nothing itself: for a watched name it asks the finders
 * behind it for the spec and wraps the spec's loader, so that the real
 * loader runs and torchrw hears when the module has executed.  The wrapper
 * puts the real loader back on the spec and the module before executing
 * it, so the module never sees it.
 */
#include <string.h>

#include "glue.h"

typedef struct {
  char *path;   /* the dotted path waited for */
  char *stable; /* reported as not found when the wait ends; NULL: not reported */
  trw__py_apply_fn apply;
  void *arg;
  trw_env env;
  trw__py_until until;
} Deferred;

static Deferred *deferred;
static size_t ndeferred, capdeferred;
static PyObject *finder; /* in sys.meta_path while anything is deferred */

/* ------------------------------------------------------------------------ */
/* Resolving without importing                                               */

static int is_module(PyObject *o) { return PyModule_Check(o); }

/* obj.name without side effects a module could attach to it: for a module
 * its namespace only (and its type's descriptors), never its __getattr__
 * (PEP 562), which imports submodules in torch 2.x (torch.onnx,
 * torch._dynamo) and in lazily loading packages.  New reference, or NULL
 * with no exception set when obj has no such attribute (yet). */
static PyObject *lookup(PyObject *obj, const char *name)
{
  PyObject *key = PyUnicode_FromString(name);
  PyObject *r = !key               ? NULL
                : is_module(obj) ? PyObject_GenericGetAttr(obj, key)
                                 : PyObject_GetAttr(obj, key);
  Py_XDECREF(key);
  if (!r)
    PyErr_Clear();
  return r;
}

/* Does module m compute missing attributes (a module __getattr__)? */
static int computes_attributes(PyObject *m)
{
  PyObject *d = PyModule_GetDict(m); /* borrowed */
  if (d && PyDict_GetItemString(d, "__getattr__"))
    return 1;
  /* A module subclass may define it on its type (transformers' _LazyModule). */
  return Py_TYPE(m) != &PyModule_Type && PyObject_HasAttrString((PyObject *)Py_TYPE(m), "__getattr__");
}

int trw__py_resolve(const char *name, PyObject **owner, const char **attr, char *why,
                    size_t whylen)
{
  *owner = NULL;
  *attr = NULL;
  const char *last = strrchr(name, '.');
  if (!last || !last[1] || last == name) {
    trw__fmt(why, whylen, "'%s' is not a dotted path (module.function)", name);
    return -1;
  }
  size_t len = strlen(name);
  char *buf = PyMem_Malloc(len + 1);
  if (!buf) {
    trw__fmt(why, whylen, "out of memory");
    return -1;
  }
  /* The longest prefix that is an imported module. */
  PyObject *obj = NULL;
  size_t modlen = (size_t)(last - name);
  while (modlen > 0) {
    memcpy(buf, name, modlen);
    buf[modlen] = '\0';
    PyObject *key = PyUnicode_FromString(buf);
    obj = key ? PyImport_GetModule(key) : NULL;
    Py_XDECREF(key);
    if (obj || PyErr_Occurred())
      break;
    const char *dot = NULL;
    for (const char *p = name; p < name + modlen; p++)
      if (*p == '.')
        dot = p;
    modlen = dot ? (size_t)(dot - name) : 0;
  }
  PyErr_Clear();
  if (!obj) {
    size_t first = strcspn(name, ".");
    trw__fmt(why, whylen, "module '%.*s' is not imported", (int)first, name);
    PyMem_Free(buf);
    return 1;
  }
  /* Walk the attributes between the module and the last segment.  A
   * module without the next one may have a submodule of that name still to
   * import; anything else without it does not have it. */
  const char *p = name + modlen + 1;
  while (p < last) {
    const char *dot = strchr(p, '.');
    memcpy(buf, p, (size_t)(dot - p));
    buf[dot - p] = '\0';
    PyObject *next = lookup(obj, buf);
    if (!next) {
      int waiting = is_module(obj);
      if (waiting)
        trw__fmt(why, whylen, "module '%.*s' is not imported", (int)(dot - name), name);
      else
        trw__fmt(why, whylen, "'%.*s' has no attribute '%s'", (int)(p - name - 1), name, buf);
      Py_DECREF(obj);
      PyMem_Free(buf);
      return waiting ? 1 : -1;
    }
    Py_DECREF(obj);
    obj = next;
    p = dot + 1;
  }
  PyMem_Free(buf);
  PyObject *found = lookup(obj, last + 1);
  if (!found) {
    /* A module that computes attributes may give this one once something
     * is imported: wait, without asking it. */
    int waiting = is_module(obj) && computes_attributes(obj);
    if (waiting)
      trw__fmt(why, whylen, "'%.*s' has no attribute '%s' yet (its __getattr__ is not asked)",
               (int)(last - name), name, last + 1);
    else
      trw__fmt(why, whylen, "'%.*s' has no attribute '%s'", (int)(last - name), name, last + 1);
    Py_DECREF(obj);
    return waiting ? 1 : -1;
  }
  Py_DECREF(found);
  *owner = obj;
  *attr = last + 1;
  return 0;
}

int trw__py_target(trw__rewriter *r, PyObject **owner, const char **attr)
{
  char why[512];
  int rc = trw__py_resolve(r->name, owner, attr, why, sizeof why);
  if (rc < 0)
    trw__report_not_found(r->stable, why);
  return rc;
}

int trw__py_target_class(trw__rewriter *r, const char *what, PyObject **cls)
{
  PyObject *owner = NULL;
  const char *attr = NULL;
  *cls = NULL;
  int rc = trw__py_target(r, &owner, &attr);
  if (rc != 0)
    return rc;
  PyObject *c = PyObject_GetAttrString(owner, attr);
  Py_DECREF(owner);
  if (c && PyType_Check(c)) {
    *cls = c;
    return 0;
  }
  PyErr_Clear();
  Py_XDECREF(c);
  trw__report_not_found(r->stable, what);
  return -1;
}

/* ------------------------------------------------------------------------ */
/* The finder and the loader wrapper                                         */

/* Nonzero when some deferred target's path goes through module name. */
static int watched(const char *name)
{
  size_t n = strlen(name);
  for (size_t i = 0; i < ndeferred; i++) {
    const char *t = deferred[i].path;
    if (strncmp(t, name, n) == 0 && t[n] == '.')
      return 1;
  }
  return 0;
}

static void forget(size_t i)
{
  PyMem_Free(deferred[i].path);
  PyMem_Free(deferred[i].stable);
  deferred[i] = deferred[--ndeferred];
}

/* The modules the wrapper is executing, innermost last.  A package's
 * __init__ imports its submodules: when one of them has executed, the
 * package on the same path has not, and what waits on the path waits for
 * it too (it hears when the package has executed).  Deeper nesting than
 * this is not waited for. */
enum { MAX_RUNNING = 64 };
static PyObject *running[MAX_RUNNING];
static int nrunning;

/* Is a module on path other than done still executing? */
static int path_running(const char *path, const char *done)
{
  for (int i = 0; i < nrunning; i++) {
    const char *m = PyUnicode_AsUTF8(running[i]);
    size_t n = m ? strlen(m) : 0;
    if (m && strcmp(m, done) != 0 && strncmp(path, m, n) == 0 && path[n] == '.')
      return 1;
  }
  PyErr_Clear();
  return 0;
}

/* Applies what waits on module name; 0, or -1 with an exception set. */
static int imported(const char *name)
{
  size_t n = strlen(name);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < ndeferred;) {
    Deferred *d = &deferred[i];
    if (strncmp(d->path, name, n) != 0 || d->path[n] != '.' || path_running(d->path, name)) {
      i++;
      continue;
    }
    trw_env env = d->env;
    int r = d->apply(d->arg, &env);
    if (r == 1) {
      i++;
      continue;
    }
    if (r < 0)
      rc = -1;
    else
      trw__log(TRW__LOG_DEBUG, "%s applied when %s was imported", d->path, name);
    forget(i); /* applied, or reported not found */
  }
  return rc;
}

typedef struct {
  PyObject_HEAD
  PyObject *loader; /* the real one */
} Loader;

static PyObject *loader_create_module(Loader *self, PyObject *spec)
{
  if (!PyObject_HasAttrString(self->loader, "create_module"))
    Py_RETURN_NONE;
  return PyObject_CallMethod(self->loader, "create_module", "O", spec);
}

static PyObject *loader_exec_module(Loader *self, PyObject *module)
{
  /* The module sees its real loader. */
  PyObject *spec = PyObject_GetAttrString(module, "__spec__");
  if (!spec || PyObject_SetAttrString(spec, "loader", self->loader) != 0 ||
      PyObject_SetAttrString(module, "__loader__", self->loader) != 0) {
    Py_XDECREF(spec);
    return NULL;
  }
  Py_DECREF(spec);
  PyObject *name = PyObject_GetAttrString(module, "__name__");
  if (!name)
    return NULL;
  if (nrunning < MAX_RUNNING)
    running[nrunning++] = name;
  PyObject *r = PyObject_CallMethod(self->loader, "exec_module", "O", module);
  /* Threads import at once: take out this one, wherever it is. */
  for (int i = nrunning - 1; i >= 0; i--)
    if (running[i] == name) {
      memmove(&running[i], &running[i + 1], (size_t)(nrunning - i - 1) * sizeof *running);
      nrunning--;
      break;
    }
  const char *s = r ? PyUnicode_AsUTF8(name) : NULL;
  int rc = s ? imported(s) : -1;
  Py_XDECREF(r);
  Py_DECREF(name);
  if (rc != 0)
    return NULL;
  Py_RETURN_NONE;
}

/* Everything else the import system or tools ask of a loader. */
static PyObject *loader_getattro(Loader *self, PyObject *name)
{
  PyObject *r = PyObject_GenericGetAttr((PyObject *)self, name);
  if (r || !PyErr_ExceptionMatches(PyExc_AttributeError))
    return r;
  PyErr_Clear();
  return PyObject_GetAttr(self->loader, name);
}

static void loader_dealloc(Loader *self)
{
  Py_XDECREF(self->loader);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef loader_methods[] = {
    {"create_module", (PyCFunction)loader_create_module, METH_O, NULL},
    {"exec_module", (PyCFunction)loader_exec_module, METH_O, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject LoaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw._Loader",
    .tp_basicsize = sizeof(Loader),
    .tp_dealloc = (destructor)loader_dealloc,
    .tp_getattro = (getattrofunc)loader_getattro,
    .tp_methods = loader_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Runs a module's own loader, then applies the torchrw rewriters that waited for it.",
};

static __thread int finding; /* the finders behind us may come back here */

static PyObject *finder_find_spec(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
  if (nargs < 1 || nargs > 3 || !PyUnicode_Check(args[0])) {
    PyErr_SetString(PyExc_TypeError, "find_spec(name, path=None, target=None)");
    return NULL;
  }
  const char *name = PyUnicode_AsUTF8(args[0]);
  if (!name || finding || !watched(name))
    Py_RETURN_NONE;
  PyObject *path = nargs > 1 ? args[1] : Py_None, *target = nargs > 2 ? args[2] : Py_None;
  PyObject *meta = PySys_GetObject("meta_path"); /* borrowed */
  PyObject *found = NULL;
  finding = 1;
  for (Py_ssize_t i = 0; meta && PyList_Check(meta) && i < PyList_GET_SIZE(meta); i++) {
    PyObject *f = PyList_GET_ITEM(meta, i);
    if (f == self || !PyObject_HasAttrString(f, "find_spec"))
      continue;
    Py_INCREF(f);
    found = PyObject_CallMethod(f, "find_spec", "OOO", args[0], path, target);
    Py_DECREF(f);
    if (!found || found != Py_None)
      break;
    Py_CLEAR(found);
  }
  finding = 0;
  if (!found)
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
  PyObject *loader = PyObject_GetAttrString(found, "loader");
  if (!loader || loader == Py_None || !PyObject_HasAttrString(loader, "exec_module")) {
    PyErr_Clear();
    Py_XDECREF(loader);
    return found;
  }
  Loader *w = PyObject_New(Loader, &LoaderType);
  if (w) {
    w->loader = loader;
    loader = NULL;
  }
  if (!w || PyObject_SetAttrString(found, "loader", (PyObject *)w) != 0)
    Py_CLEAR(found);
  Py_XDECREF(w);
  Py_XDECREF(loader);
  return found;
}

static PyMethodDef finder_methods[] = {
    {"find_spec", (PyCFunction)(void (*)(void))finder_find_spec, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject FinderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw._DeferredFinder",
    .tp_basicsize = sizeof(PyObject),
    .tp_methods = finder_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Watches the modules torchrw rewriters wait for (finds nothing itself).",
};

/* sys.meta_path gets the finder at its front, or loses it. */
static int finder_install(int on)
{
  PyObject *meta = PySys_GetObject("meta_path");
  if (!meta || !PyList_Check(meta))
    return 0; /* an interpreter shutting down */
  if (on && !finder) {
    if (trw__py_lazy_ready(NULL) < 0) /* before the torchrw module, for the shim's hooks */
      return -1;
    finder = PyType_GenericNew(&FinderType, NULL, NULL);
    if (!finder || PyList_Insert(meta, 0, finder) != 0) {
      Py_CLEAR(finder);
      return -1;
    }
  } else if (!on && finder) {
    for (Py_ssize_t i = PyList_GET_SIZE(meta) - 1; i >= 0; i--)
      if (PyList_GET_ITEM(meta, i) == finder && PySequence_DelItem(meta, i) != 0)
        PyErr_Clear();
    Py_CLEAR(finder);
  }
  return 0;
}

/* ------------------------------------------------------------------------ */

int trw__py_defer(const char *path, const char *stable, trw__py_apply_fn apply, void *arg,
                  const trw_env *env, trw__py_until until)
{
  if (ndeferred == capdeferred) {
    size_t cap = capdeferred ? capdeferred * 2 : 16;
    Deferred *grown = PyMem_Realloc(deferred, cap * sizeof *grown);
    if (!grown) {
      PyErr_NoMemory();
      return -1;
    }
    deferred = grown;
    capdeferred = cap;
  }
  char *p = PyMem_Malloc(strlen(path) + 1), *st = stable ? PyMem_Malloc(strlen(stable) + 1) : NULL;
  if (!p || (stable && !st)) {
    PyMem_Free(p);
    PyMem_Free(st);
    PyErr_NoMemory();
    return -1;
  }
  strcpy(p, path);
  if (st)
    strcpy(st, stable);
  deferred[ndeferred++] = (Deferred){p, st, apply, arg, env ? *env : (trw_env){0}, until};
  return finder_install(1);
}

static void drop(trw__py_until until, int report);

void trw__py_drop_deferred(trw__py_until until) { drop(until, 1); }
void trw__py_forget_deferred(trw__py_until until) { drop(until, 0); }

static void drop(trw__py_until until, int report)
{
  /* Runs while the export's own exception may be pending: keep it. */
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  for (size_t i = 0; i < ndeferred;) {
    if (deferred[i].until != until) {
      i++;
      continue;
    }
    if (report && deferred[i].stable) {
      char why[512];
      PyObject *owner = NULL;
      const char *attr = NULL;
      if (trw__py_resolve(deferred[i].path, &owner, &attr, why, sizeof why) == 0) {
        trw__fmt(why, sizeof why, "imported after the export ended");
        Py_DECREF(owner);
      }
      trw__report_not_found(deferred[i].stable, why);
    }
    forget(i);
  }
  if (ndeferred == 0)
    finder_install(0);
  PyErr_Restore(type, value, tb);
}

int trw__py_lazy_ready(PyObject *m)
{
  (void)m;
  if (FinderType.tp_flags & Py_TPFLAGS_READY)
    return 0;
  return PyType_Ready(&LoaderType) < 0 || PyType_Ready(&FinderType) < 0 ? -1 : 0;
}
