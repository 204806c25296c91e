/* where.c - the Python line that called into torch, for the operator trace. */
#include <stdlib.h>
#include <string.h>

#include "glue.h"

/* While torch.export lowers a program, operators are called from the
 * graph module's generated code ("<string>", "<eval_with_...>"); the model's
 * line is in the node's stack_trace, which torch.fx.traceback keeps current
 * while the graph runs.  Its last 'File "F", line N' is the innermost. */
static int fx_node_where(char *buf, size_t len)
{
  PyObject *tb = PyImport_ImportModule("torch.fx.traceback");
  PyObject *meta = tb ? PyObject_CallMethod(tb, "get_current_meta", NULL) : NULL;
  Py_XDECREF(tb);
  PyObject *st = meta && PyDict_Check(meta) ? PyDict_GetItemString(meta, "stack_trace") : NULL;
  const char *text = st && PyUnicode_Check(st) ? PyUnicode_AsUTF8(st) : NULL;
  int rc = TRW_ENOTFOUND;
  const char *last = NULL;
  for (const char *p = text; p && (p = strstr(p, "File \"")); p++)
    last = p;
  if (last) {
    const char *name = last + 6, *end = strchr(name, '"');
    const char *ln = end ? strstr(end, ", line ") : NULL;
    if (ln) {
      trw__fmt(buf, len, "%.*s:%ld", (int)(end - name), name, strtol(ln + 7, NULL, 10));
      rc = 0;
    }
  }
  Py_XDECREF(meta);
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
    if (fn && fn[0] == '<' && fx_node_where(buf, len) == 0) {
      Py_XDECREF(code);
      rc = 0;
      goto done;
    }
    trw__fmt(buf, len, "%s:%d", fn ? fn : "?", PyFrame_GetLineNumber(use));
    Py_XDECREF(code);
    rc = 0;
  }
done:
  if (pick && pick != f)
    Py_DECREF(pick);
  Py_XDECREF(f);
  PyErr_Clear();
  PyGILState_Release(gil);
  return rc;
}
