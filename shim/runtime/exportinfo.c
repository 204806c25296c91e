/* exportinfo.c - what the runtime asks Python: which torch is in the
 * process, and the export under way.  Calls nothing else of the runtime,
 * so that runtime.c and pyapi.c both call down into it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../adapter/adapter.h"
#include "../python/glue.h"
#include "runtime.h"

/* torch.onnx's GLOBALS know whether an ONNX export is running and at which
 * opset (the adapter says where they live in this torch).  When torch.onnx
 * is not imported no ONNX export is running, and it stays not imported.
 * GLOBALS are the process's: while another thread is inside
 * torch.onnx.export and this one is not, the export is the other's, and
 * this thread's trace (torch.jit.trace) is not an ONNX export. */
int trw__runtime_export_info(trw_ir *ir, int *opset)
{
  if (!ir || !opset || !Py_IsInitialized())
    return TRW_EPYTHON;
  PyGILState_STATE gil = PyGILState_Ensure();
  int rc = TRW_EPYTHON;
  PyObject *name = PyUnicode_FromString(trw__adapter_get()->onnx_globals);
  PyObject *mod = name ? PyImport_GetModule(name) : NULL;
  Py_XDECREF(name);
  if (!mod && !PyErr_Occurred()) {
    *ir = TRW_IR_TORCHSCRIPT;
    *opset = 0;
    PyGILState_Release(gil);
    return 0;
  }
  PyObject *globals = mod ? PyObject_GetAttrString(mod, "GLOBALS") : NULL;
  PyObject *in_export = globals ? PyObject_GetAttrString(globals, "in_onnx_export") : NULL;
  if (in_export) {
    int yes = PyObject_IsTrue(in_export);
    if (yes > 0 && trw__export_depth() == 0 && trw__exporting_threads() > 0)
      yes = 0;
    *ir = yes > 0 ? TRW_IR_ONNX : TRW_IR_TORCHSCRIPT;
    *opset = 0;
    if (yes > 0) {
      PyObject *v = PyObject_GetAttrString(globals, "export_onnx_opset_version");
      long o = v ? PyLong_AsLong(v) : -1;
      if (o > 0)
        *opset = (int)o;
      Py_XDECREF(v);
    }
    rc = yes < 0 ? TRW_EPYTHON : 0;
  }
  if (PyErr_Occurred())
    PyErr_Clear();
  Py_XDECREF(in_export);
  Py_XDECREF(globals);
  Py_XDECREF(mod);
  PyGILState_Release(gil);
  return rc;
}

/* torch.__version__ against the torch this runtime was built for. */
int trw__runtime_check_torch(char *err, size_t errlen)
{
  if (!Py_IsInitialized())
    return 0;
  PyGILState_STATE gil = PyGILState_Ensure();
  PyObject *torch = PyImport_ImportModule("torch");
  PyObject *v = torch ? PyObject_GetAttrString(torch, "__version__") : NULL;
  PyObject *s = v ? PyObject_Str(v) : NULL;
  const char *version = s ? PyUnicode_AsUTF8(s) : NULL;
  int rc = 0;
  if (!version) {
    char why[512];
    trw__py_describe_error(why, sizeof why, 0);
    trw__fmt(err, errlen, "torchrw: cannot tell the torch in this process: %s", why);
    rc = TRW_ENOTORCH;
  } else if (trw__adapter_check_torch(version, err, errlen) != 0) {
    rc = TRW_ENOTORCH;
  }
  Py_XDECREF(s);
  Py_XDECREF(v);
  Py_XDECREF(torch);
  PyErr_Clear();
  PyGILState_Release(gil);
  return rc;
}
