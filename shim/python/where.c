/* where.c - the Python line that called into torch, for the operator trace. */
#include <string.h>

#include "glue.h"

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
