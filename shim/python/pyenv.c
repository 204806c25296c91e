/* pyenv.c - what the runtime asks Python about the export under way. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "../runtime/runtime.h"

/* torch.onnx._globals.GLOBALS knows whether an ONNX export is running and
 * at which opset (torch 1.13). */
int trw__py_export_info(trw_ir *ir, int *opset)
{
  if (!ir || !opset || !Py_IsInitialized())
    return TRW_EPYTHON;
  PyGILState_STATE gil = PyGILState_Ensure();
  int rc = TRW_EPYTHON;
  PyObject *mod = PyImport_ImportModule("torch.onnx._globals");
  PyObject *globals = mod ? PyObject_GetAttrString(mod, "GLOBALS") : NULL;
  PyObject *in_export = globals ? PyObject_GetAttrString(globals, "in_onnx_export") : NULL;
  if (in_export) {
    int yes = PyObject_IsTrue(in_export);
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

/* The Python line that called into torch: the innermost frame outside
 * torch's own package (nn.Module.__call__, functional.py), or the innermost
 * frame.  Takes the GIL: torch's bindings release it around operators. */
int trw__py_where(char *buf, size_t len)
{
  if (!Py_IsInitialized())
    return TRW_EPYTHON;
  PyGILState_STATE gil = PyGILState_Ensure();
  PyFrameObject *f = PyEval_GetFrame();
  Py_XINCREF(f);
  PyFrameObject *pick = NULL;
  for (PyFrameObject *cur = f; cur;) {
    PyCodeObject *code = PyFrame_GetCode(cur);
    const char *fn = code ? PyUnicode_AsUTF8(code->co_filename) : NULL;
    Py_XDECREF(code);
    if (fn && !strstr(fn, "/torch/") && !strstr(fn, "<frozen")) {
      pick = cur;
      break;
    }
    PyFrameObject *back = PyFrame_GetBack(cur);
    if (cur != f)
      Py_DECREF(cur);
    cur = back;
  }
  PyFrameObject *use = pick ? pick : f;
  int rc = TRW_ENOTFOUND;
  if (use) {
    PyCodeObject *code = PyFrame_GetCode(use);
    const char *fn = code ? PyUnicode_AsUTF8(code->co_filename) : NULL;
    trw__fmt(buf, len, "%s:%d", fn ? fn : "?", PyFrame_GetLineNumber(use));
    Py_XDECREF(code);
    rc = 0;
  }
  if (pick && pick != f)
    Py_DECREF(pick);
  Py_XDECREF(f);
  PyErr_Clear();
  PyGILState_Release(gil);
  return rc;
}
