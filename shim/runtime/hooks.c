/*
 * hooks.c - the Python entry points torchrw brackets.
 *
 * Rewriting is on while a model is captured for export.  The preloaded
 * shim sees torch's tracer entry itself; everything else is seen from
 * Python, by replacing an entry point with a Hook that turns rewriting on
 * around the original:
 *
 *   - the tracer's entries, for RewriterContext (no preloading);
 *   - torch.export's, whose capture never reaches the tracer: the export
 *     of torch.onnx.export when it goes through torch.export (its default
 *     from torch 2.9), torch.export.export and draft_export (the model's
 *     Python runs, so Python rewriters apply; operator kernels are off,
 *     see trw__bridge_capture), and ExportedProgram.run_decompositions
 *     (the program is retraced to ATen: operator rewriters apply there,
 *     as under the tracer).
 *
 * The shim installs the export hooks for the whole process when torch is
 * imported (torch.onnx and torch.export are imported later, so they wait
 * for their modules, shim/python/lazy.c); RewriterContext installs both
 * kinds for its block.  The adapter lists them per torch.
 */
#include <stdlib.h>
#include <string.h>

#include "../adapter/adapter.h"
#include "../core/status_wire.h"
#include "../python/glue.h"
#include "../torch/bridge.h"
#include "runtime.h"

enum { ROLE_TRACE = -1 }; /* beside trw__hook_role */

typedef struct {
  PyObject_HEAD
  PyObject *original;
  int role;
  vectorcallfunc vectorcall;
} Hook;

/* The value of keyword argument name in a vectorcall, or NULL. */
static PyObject *kwarg(PyObject *const *args, size_t nargsf, PyObject *kwnames, const char *name)
{
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  for (Py_ssize_t i = 0; kwnames && i < PyTuple_GET_SIZE(kwnames); i++)
    if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), name) == 0)
      return args[nargs + i];
  return NULL;
}

/* Does this torch.onnx.export call go through torch.export? */
static int goes_through_torch_export(PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
  PyObject *dynamo = kwarg(args, nargsf, kwnames, "dynamo");
  if (dynamo)
    return PyObject_IsTrue(dynamo) > 0;
  if (PyVectorcall_NARGS(nargsf) > 0) {
    /* An ExportedProgram is exported through torch.export whatever dynamo says. */
    PyObject *name = PyUnicode_FromString("torch.export");
    PyObject *mod = name ? PyImport_GetModule(name) : NULL;
    PyObject *cls = mod ? PyObject_GetAttrString(mod, "ExportedProgram") : NULL;
    int is_program = cls && PyObject_IsInstance(args[0], cls) > 0;
    Py_XDECREF(cls);
    Py_XDECREF(mod);
    Py_XDECREF(name);
    PyErr_Clear();
    if (is_program)
      return 1;
  }
  return trw__adapter_get()->dynamo_default;
}

/* An int constant of a module, or 0. */
static int module_int(const char *module, const char *attr)
{
  if (!module || !attr)
    return 0;
  PyObject *mod = PyImport_ImportModule(module);
  PyObject *o = mod ? PyObject_GetAttrString(mod, attr) : NULL;
  long v = o ? PyLong_AsLong(o) : 0;
  Py_XDECREF(o);
  Py_XDECREF(mod);
  PyErr_Clear();
  return v > 0 ? (int)v : 0;
}

/* The opset a torch.onnx.export call through torch.export asks for. */
static int export_opset(PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
  PyObject *v = kwarg(args, nargsf, kwnames, "opset_version");
  if (v && PyLong_Check(v))
    return (int)PyLong_AsLong(v);
  const trw__adapter *a = trw__adapter_get();
  return module_int(a->onnx_constants, a->default_opset_attr);
}

/* The opset it builds the graph at before converting to the one asked. */
static int build_opset(int asked)
{
  const trw__adapter *a = trw__adapter_get();
  int floor = module_int(a->build_opset_module, a->build_opset_attr);
  return asked > floor ? asked : floor;
}

/* Whether callable f takes a parameter called name (by its code object;
 * 0 when it has none). */
static int takes_parameter(PyObject *f, const char *name)
{
  PyObject *code = PyObject_GetAttrString(f, "__code__");
  PyObject *names = code ? PyObject_GetAttrString(code, "co_varnames") : NULL;
  PyObject *argc = code ? PyObject_GetAttrString(code, "co_argcount") : NULL;
  PyObject *kwc = code ? PyObject_GetAttrString(code, "co_kwonlyargcount") : NULL;
  Py_ssize_t n = argc && kwc ? PyLong_AsSsize_t(argc) + PyLong_AsSsize_t(kwc) : 0;
  int found = 0;
  for (Py_ssize_t i = 0; names && PyTuple_Check(names) && i < n && i < PyTuple_GET_SIZE(names); i++)
    if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(names, i), name) == 0)
      found = 1;
  Py_XDECREF(kwc);
  Py_XDECREF(argc);
  Py_XDECREF(names);
  Py_XDECREF(code);
  PyErr_Clear();
  return found;
}

/* A vectorcall's arguments as a tuple and a dict (new references); -1
 * with both NULL and an exception set when out of memory. */
static int call_parts(PyObject *const *args, size_t nargsf, PyObject *kwnames, PyObject **pos,
                      PyObject **kw)
{
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  *pos = PyTuple_New(nargs);
  *kw = *pos ? PyDict_New() : NULL;
  for (Py_ssize_t i = 0; *kw && i < nargs; i++)
    PyTuple_SET_ITEM(*pos, i, Py_NewRef(args[i]));
  for (Py_ssize_t i = 0; *kw && kwnames && i < PyTuple_GET_SIZE(kwnames); i++)
    if (PyDict_SetItem(*kw, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) != 0)
      Py_CLEAR(*kw);
  if (*kw)
    return 0;
  Py_CLEAR(*pos);
  return -1;
}

/* TORCHRW_SAMPLE=1: the export's example inputs and PyTorch's outputs on
 * them, written beside its file before it is exported
 * (shim/python/sample.py).  A failure is a warning: the export goes on. */
static void record_sample(Hook *h, PyObject *const *args, size_t nargsf, PyObject *kwnames,
                          int through_torch_export)
{
  const char *v = getenv("TORCHRW_SAMPLE");
  if (!v || strcmp(v, "1") != 0)
    return;
  PyObject *pos = NULL, *kw = NULL, *r = NULL;
  PyObject *m = trw__py_embedded("sample");
  if (m && call_parts(args, nargsf, kwnames, &pos, &kw) == 0)
    r = PyObject_CallMethod(m, "save", "OOOO", h->original, pos, kw,
                            through_torch_export ? Py_True : Py_False);
  if (!r) {
    char why[1024];
    trw__py_describe_error(why, sizeof why, 0);
    trw__log(TRW__LOG_WARN, "TORCHRW_SAMPLE: no sample of this export: %s", why);
  }
  Py_XDECREF(r);
  Py_XDECREF(pos);
  Py_XDECREF(kw);
}

/* torch.onnx.export through torch.export, with what the backend needs of
 * it:
 *   - the symbolic rewriters as translations: custom_translation_table
 *     gets theirs, under the caller's own (a translation the caller gives
 *     wins);
 *   - for a backend whose engine cannot read external data (ncnn: pnnx
 *     writes garbage weights), the weights in the .onnx file: torch's
 *     exporter stores them outside by default (external_data=True), and
 *     still does past protobuf's 2 GB.  An external_data the caller gives
 *     wins. */
static PyObject *export_with_backend_arguments(Hook *h, PyObject *const *args, size_t nargsf,
                                               PyObject *kwnames)
{
  const trw_env *env = trw__runtime_env();
  PyObject *table = trw__py_translation_table(env, build_opset(env->opset));
  if (!table)
    return NULL;
  int inline_weights = !trw__backend_reads_external_data(env->backend) &&
                       !kwarg(args, nargsf, kwnames, "external_data") &&
                       takes_parameter(h->original, "external_data");
  if (PyDict_GET_SIZE(table) == 0 && !inline_weights) {
    Py_DECREF(table);
    return PyObject_Vectorcall(h->original, args, nargsf, kwnames);
  }
  PyObject *pos, *kw;
  int ok = call_parts(args, nargsf, kwnames, &pos, &kw) == 0;
  if (ok && PyDict_GET_SIZE(table) > 0) {
    PyObject *given = PyDict_GetItemString(kw, "custom_translation_table");
    ok = (!given || given == Py_None || PyDict_Update(table, given) == 0) &&
         PyDict_SetItemString(kw, "custom_translation_table", table) == 0;
  }
  if (ok && inline_weights) {
    ok = PyDict_SetItemString(kw, "external_data", Py_False) == 0;
    trw__log(TRW__LOG_INFO, "%s cannot read weights stored outside the ONNX file: "
             "torch.onnx.export writes them into it (external_data=False; past 2 GB torch "
             "still stores them outside)", env->backend);
  }
  PyObject *r = ok ? PyObject_Call(h->original, pos, kw) : NULL;
  trw__py_translation_done();
  Py_XDECREF(pos);
  Py_XDECREF(kw);
  Py_DECREF(table);
  return r;
}

/* Whether the torch.onnx.export in progress optimizes its graph (its
 * optimize=, True unless the caller says). */
static int export_optimizes = 1;

/* onnxscript's convert_version(model, target_version, fallback=None), by
 * which torch.onnx's exporter brings its graph (built at opset 18 at
 * least) down to the opset asked for.  Inside an export under torchrw,
 * torchrw's converter goes first (shim/export/opset_conversion.py):
 * below 18 onnxscript leaves the graph to ONNX's C converter, which
 * refuses nearly every real one and keeps 18.  A graph torchrw's cannot
 * convert goes on to onnxscript's, with the reason. */
static PyObject *convert_down(Hook *h, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  PyObject *model = nargs > 0 ? args[0] : kwarg(args, nargsf, kwnames, "model");
  PyObject *target = nargs > 1 ? args[1] : kwarg(args, nargsf, kwnames, "target_version");
  if (trw__export_depth() == 0 || !model || !target || !PyLong_Check(target))
    return PyObject_Vectorcall(h->original, args, nargsf, kwnames);
  long opset = PyLong_AsLong(target);
  PyObject *mod = trw__py_embedded("opset_conversion");
  PyObject *why = mod ? PyObject_CallMethod(mod, "convert", "OOO", model, target,
                                            export_optimizes ? Py_True : Py_False)
                      : NULL;
  if (why == Py_None) {
    Py_DECREF(why);
    trw__log(TRW__LOG_INFO, "converted the exported graph down to opset %ld", opset);
    Py_RETURN_NONE;
  }
  char reason[1024];
  if (why && PyUnicode_Check(why) && PyUnicode_GetLength(why) == 0) {
    /* Not a conversion down (an opset above the one built at). */
  } else if (why && PyUnicode_Check(why)) {
    trw__fmt(reason, sizeof reason, "%s", PyUnicode_AsUTF8(why));
    trw__log(TRW__LOG_INFO, "cannot convert the exported graph down to opset %ld: %s; "
             "leaving it to torch's converter", opset, reason);
  } else {
    trw__py_describe_error(reason, sizeof reason, 1);
    trw__log(TRW__LOG_WARN, "converting the exported graph down to opset %ld failed: %s; "
             "leaving it to torch's converter", opset, reason);
  }
  Py_XDECREF(why);
  PyErr_Clear();
  return PyObject_Vectorcall(h->original, args, nargsf, kwnames);
}

/* torch.onnx.export's f when it is a path: no file torchrw writes may be it. */
static void guard_output(PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
  PyObject *f = kwarg(args, nargsf, kwnames, "f");
  if (!f && PyVectorcall_NARGS(nargsf) > 2)
    f = args[2];
  if (!f || !(PyUnicode_Check(f) || PyBytes_Check(f) || PyObject_HasAttrString(f, "__fspath__")))
    return;
  PyObject *path = PyOS_FSPath(f);
  PyObject *bytes = NULL;
  if (path && PyUnicode_FSConverter(path, &bytes) && bytes)
    trw__output_guard(PyBytes_AS_STRING(bytes), "the export's output file");
  Py_XDECREF(bytes);
  Py_XDECREF(path);
  PyErr_Clear();
}

static void install_write_hooks(void);

/* TORCHRW_SOURCE_LINES=1: the TorchScript exporter keeps each node's
 * source range (the Python lines that made it) in the node's doc string,
 * as it does with verbose=True, without printing the graph; `torchrw
 * check` names those lines. */
static int source_lines_on(void)
{
  const char *v = getenv("TORCHRW_SOURCE_LINES");
  return v && strcmp(v, "1") == 0;
}

/* Graph._export_onnx(self, params, opset, dynamic_axes, defer_weight_export,
 * operator_export_type, strip_doc_string, ...) as both TorchScript
 * exporters call it (torch/onnx/utils.py in 1.13,
 * torch/onnx/_internal/torchscript_exporter/utils.py from 2.9): all
 * positional.  With TORCHRW_SOURCE_LINES, strip_doc_string is False. */
enum { EXPORT_ONNX_STRIP_DOC_STRING = 6 };

static PyObject *write_keeping_lines(Hook *h, PyObject *const *args, size_t nargsf,
                                     PyObject *kwnames)
{
  Py_ssize_t n = PyVectorcall_NARGS(nargsf);
  Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  PyObject *small[16], **copy = small;
  if (n <= EXPORT_ONNX_STRIP_DOC_STRING || !PyBool_Check(args[EXPORT_ONNX_STRIP_DOC_STRING]))
    return PyObject_Vectorcall(h->original, args, nargsf, kwnames);
  if (n + nkw > 16 && !(copy = PyMem_Malloc((size_t)(n + nkw) * sizeof *copy)))
    return PyErr_NoMemory();
  memcpy(copy, args, (size_t)(n + nkw) * sizeof *copy);
  copy[EXPORT_ONNX_STRIP_DOC_STRING] = Py_False;
  PyObject *r = PyObject_Vectorcall(h->original, copy, (size_t)n, kwnames);
  if (copy != small)
    PyMem_Free(copy);
  return r;
}

static PyObject *hook_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
  Hook *h = (Hook *)self;
  char err[4096];
  if (h->role == TRW__HOOK_WRITE) {
    /* Only the status line's: writing lasts until the export returns. */
    if (trw__export_depth() > 0)
      trw__status_phase(TRW__PHASE_WRITING);
    if (source_lines_on())
      return write_keeping_lines(h, args, nargsf, kwnames);
    return PyObject_Vectorcall(h->original, args, nargsf, kwnames);
  }
  if (h->role == TRW__HOOK_CONVERT)
    return convert_down(h, args, nargsf, kwnames);
  if (trw__runtime_load(err, sizeof err) != 0) {
    if (!PyErr_Occurred())
      PyErr_SetString(PyExc_RuntimeError, err);
    return NULL;
  }
  int through_torch_export = 1;
  switch (h->role) {
  case TRW__HOOK_EXPORT:
    install_write_hooks();
    guard_output(args, nargsf, kwnames);
    /* The TorchScript exporter reaches the tracer, which brackets itself. */
    through_torch_export = goes_through_torch_export(args, nargsf, kwnames);
    record_sample(h, args, nargsf, kwnames, through_torch_export);
    if (through_torch_export) {
      PyObject *optimize = kwarg(args, nargsf, kwnames, "optimize");
      export_optimizes = !optimize || PyObject_IsTrue(optimize) != 0;
      trw__runtime_expect(TRW_IR_ONNX, export_opset(args, nargsf, kwnames),
                          TRW_EXPORTER_TORCH_EXPORT);
    }
    break;
  case TRW__HOOK_CAPTURE:
  case TRW__HOOK_LOWER:
    /* Called inside torch.onnx.export, the export's environment holds. */
    if (trw__scope_depth() == 0)
      trw__runtime_expect(TRW_IR_ANY, 0, TRW_EXPORTER_TORCH_EXPORT);
    break;
  default:
    break;
  }
  PyObject *r = NULL;
  if (h->role == TRW__HOOK_EXPORT) {
    /* The Python rewriters of its traces, and the trace's report record,
     * stay until the export returns (torch.onnx calls some of their targets
     * after the trace; a pool worker never exits to flush the report). */
    trw__export_enter();
    trw__status_phase(TRW__PHASE_TRACING);
    r = through_torch_export ? NULL : PyObject_Vectorcall(h->original, args, nargsf, kwnames);
  }
  if (through_torch_export) {
    if (trw__scope_enter(err, sizeof err) != 0) {
      if (!PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, err);
    } else {
      if (h->role == TRW__HOOK_CAPTURE) {
        trw__bridge_capture(1);
        trw__status_phase(TRW__PHASE_TRACING);
      } else if (h->role == TRW__HOOK_LOWER) {
        trw__bridge_lower(1);
        /* Inside torch.onnx.export, decomposing is the ONNX conversion's
         * first step; on its own, it retraces the program. */
        trw__status_phase(trw__export_depth() > 0 ? TRW__PHASE_CONVERTING : TRW__PHASE_TRACING);
      }
      r = h->role == TRW__HOOK_EXPORT ? export_with_backend_arguments(h, args, nargsf, kwnames)
                                      : PyObject_Vectorcall(h->original, args, nargsf, kwnames);
      if (h->role == TRW__HOOK_CAPTURE) {
        trw__bridge_capture(0);
        if (trw__export_depth() > 0)
          trw__status_phase(TRW__PHASE_CONVERTING);
      } else if (h->role == TRW__HOOK_LOWER) {
        trw__bridge_lower(0);
      }
      trw__scope_leave();
    }
  }
  if (h->role == TRW__HOOK_EXPORT)
    trw__runtime_export_leave();
  return r;
}

static void hook_dealloc(Hook *h)
{
  Py_XDECREF(h->original);
  Py_TYPE(h)->tp_free((PyObject *)h);
}

static PyObject *hook_repr(Hook *h)
{
  return PyUnicode_FromFormat("<torchrw hook of %R>", h->original);
}

/* What inspect and torch.export read of the function they are handed. */
static PyObject *hook_getattro(Hook *h, PyObject *name)
{
  return trw__py_stand_in_getattr((PyObject *)h, name, h->original);
}

static PyTypeObject HookType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "torchrw.Hook",
    .tp_basicsize = sizeof(Hook),
    .tp_dealloc = (destructor)hook_dealloc,
    .tp_repr = (reprfunc)hook_repr,
    .tp_getattro = (getattrofunc)hook_getattro,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Hook, vectorcall),
    .tp_descr_get = trw__py_bind_method,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "A torch entry point that turns torchrw on around the call.",
};

/* ------------------------------------------------------------------------ */
/* Installed hooks: in the journal (shim/python/journal.c) of the process,
 * or of the RewriterContext block that installed them.                      */

static trw__py_until lifetime(trw__hooks_owner tag)
{
  return tag == TRW__HOOKS_PROCESS ? TRW__PY_UNTIL_PROCESS : TRW__PY_UNTIL_CONTEXT;
}

/* The pending installations, for lazy.c: one per adapter hook. */
typedef struct {
  const char *owner, *attr;
  int role;
  trw__hooks_owner tag;
} Pending;

/* Replaces owner.attr by a Hook: 0, 1 when owner's module is not imported
 * yet, -1 with an exception set.  An entry point this torch does not have
 * is skipped. */
static int install_one(void *arg, const trw_env *env)
{
  (void)env;
  Pending *p = arg;
  char path[256], why[512];
  trw__fmt(path, sizeof path, "%s.%s", p->owner, p->attr);
  PyObject *owner = NULL;
  const char *attr = NULL;
  int rc = trw__py_resolve(path, &owner, &attr, why, sizeof why);
  if (rc != 0) {
    if (rc < 0)
      trw__log(TRW__LOG_DEBUG, "not hooking %s: %s", path, why);
    return rc > 0 ? 1 : 0;
  }
  PyObject *name = PyUnicode_FromString(attr);
  PyObject *orig = name ? PyObject_GetAttr(owner, name) : NULL;
  PyObject *own = NULL;
  if (orig && PyType_Check(owner)) {
    own = PyDict_GetItemWithError(((PyTypeObject *)owner)->tp_dict, name);
    Py_XINCREF(own);
  } else if (orig) {
    own = Py_NewRef(orig);
  }
  Hook *h = orig && !PyErr_Occurred() ? PyObject_New(Hook, &HookType) : NULL;
  rc = -1;
  if (h) {
    h->original = orig;
    orig = NULL;
    h->role = p->role;
    h->vectorcall = hook_vectorcall;
    if (trw__py_journal_add(lifetime(p->tag), TRW__PY_UNDO_ATTR, owner, name, own) == 0) {
      if (PyObject_SetAttr(owner, name, (PyObject *)h) == 0) {
        rc = 0;
        trw__log(TRW__LOG_DEBUG, "hooked %s", path);
      } else {
        trw__py_journal_drop_last(lifetime(p->tag));
      }
    }
  }
  Py_XDECREF(h);
  Py_XDECREF(orig);
  Py_XDECREF(own);
  Py_XDECREF(name);
  Py_DECREF(owner);
  return rc;
}

static int install(const trw__py_attr *attrs, const trw__hook *hooks, size_t n,
                   trw__hooks_owner tag)
{
  /* One descriptor per entry point and owner, alive while it may wait:
   * [owner][trace, export or write hooks][entry point]. */
  static Pending pending[2][3][16];
  int kind = !hooks ? 0 : hooks[0].role == TRW__HOOK_WRITE ? 2 : 1;
  for (size_t i = 0; i < n && i < 16; i++) {
    Pending *p = &pending[tag][kind][i];
    *p = hooks ? (Pending){hooks[i].owner, hooks[i].attr, (int)hooks[i].role, tag}
               : (Pending){attrs[i].owner, attrs[i].attr, ROLE_TRACE, tag};
    int rc = install_one(p, NULL);
    if (rc == 1) {
      char path[256];
      trw__fmt(path, sizeof path, "%s.%s", p->owner, p->attr);
      rc = trw__py_defer(path, NULL, install_one, p, NULL, lifetime(tag));
    }
    if (rc < 0)
      return -1;
  }
  return 0;
}

/* The hooks of serialisation (the status line's, TORCHRW_SOURCE_LINES'), at
 * the first export: torch._C is only half imported when the shim sees
 * torch load, and its classes cannot be waited for.  Without either,
 * nothing is hooked. */
static void install_write_hooks(void)
{
  static int done;
  const trw__adapter *a = trw__adapter_get();
  if (done || !a->nwrite_hooks || !(trw__status_on() || source_lines_on()))
    return;
  done = 1;
  if (install(NULL, a->write_hooks, a->nwrite_hooks, TRW__HOOKS_PROCESS) != 0) {
    trw__log(TRW__LOG_DEBUG, "the status line will not show writing: cannot hook it");
    PyErr_Clear();
  }
}

int trw__hooks_install(trw__hooks_owner tag, int with_trace)
{
  if (PyType_Ready(&HookType) < 0)
    return -1;
  const trw__adapter *a = trw__adapter_get();
  if (with_trace && install(a->trace_hooks, NULL, a->ntrace_hooks, tag) != 0)
    return -1;
  if (install(NULL, a->export_hooks, a->nexport_hooks, tag) != 0)
    return -1;
  return 0;
}

void trw__hooks_remove(trw__hooks_owner tag)
{
  if (tag == TRW__HOOKS_CONTEXT)
    trw__py_drop_deferred(TRW__PY_UNTIL_CONTEXT);
  trw__py_journal_unwind(lifetime(tag));
}
