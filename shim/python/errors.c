/*
 * errors.c - how the Python glue reports errors: torchrw.RewriterError
 * for a rewriter that raised, RuntimeError("torchrw: ...") for torchrw's
 * own, and the current exception as text for the log.
 */
#include "glue.h"

static PyObject *rewriter_error; /* torchrw.RewriterError */

PyObject *trw__py_rewriter_failed(const trw__rewriter *r)
{
  PyObject *type, *exc, *tb;
  PyErr_Fetch(&type, &exc, &tb);
  PyErr_NormalizeException(&type, &exc, &tb);
  if (!exc || !rewriter_error || !PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_Exception) ||
      PyObject_TypeCheck(exc, (PyTypeObject *)rewriter_error)) {
    PyErr_Restore(type, exc, tb);
    return NULL;
  }
  if (tb)
    PyException_SetTraceback(exc, tb);
  PyObject *text = PyObject_Str(exc);
  PyObject *msg = text ? PyUnicode_FromFormat("torchrw: rewriter %s (%s:%d) raised %s: %U",
                                              r->stable, r->file, r->line,
                                              Py_TYPE(exc)->tp_name, text)
                       : NULL;
  PyObject *err = msg ? PyObject_CallOneArg(rewriter_error, msg) : NULL;
  Py_XDECREF(text);
  Py_XDECREF(msg);
  if (!err) { /* the original stands */
    PyErr_Clear();
    PyErr_Restore(type, exc, tb);
    return NULL;
  }
  Py_XDECREF(type);
  Py_XDECREF(tb);
  PyException_SetCause(err, exc); /* steals exc */
  PyErr_SetObject(rewriter_error, err);
  Py_DECREF(err);
  return NULL;
}

PyObject *trw__py_raise(const char *fmt, ...)
{
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  PyErr_Format(PyExc_RuntimeError, "torchrw: %s", msg);
  return NULL;
}

void trw__py_describe_error(char *buf, size_t len, int with_traceback)
{
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (tb && value)
    PyException_SetTraceback(value, tb);
  PyObject *text = NULL;
  if (with_traceback && value) {
    PyObject *mod = PyImport_ImportModule("traceback");
    PyObject *lines = mod ? PyObject_CallMethod(mod, "format_exception", "O", value) : NULL;
    PyObject *empty = lines ? PyUnicode_FromString("") : NULL;
    text = empty ? PyUnicode_Join(empty, lines) : NULL;
    Py_XDECREF(empty);
    Py_XDECREF(lines);
    Py_XDECREF(mod);
    PyErr_Clear();
  }
  if (!text && value) {
    PyObject *s = PyObject_Str(value);
    PyObject *tn = type ? PyObject_GetAttrString(type, "__name__") : NULL;
    text = (s && tn) ? PyUnicode_FromFormat("%U: %U", tn, s) : NULL;
    Py_XDECREF(s);
    Py_XDECREF(tn);
    PyErr_Clear();
  }
  const char *utf8 = text ? PyUnicode_AsUTF8(text) : NULL;
  trw__fmt(buf, len, "%s", utf8 ? utf8 : "unknown Python error");
  PyErr_Clear();
  Py_XDECREF(text);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
}

int trw__py_add_rewriter_error(PyObject *m)
{
  if (!rewriter_error)
    rewriter_error = PyErr_NewExceptionWithDoc(
        "torchrw.RewriterError",
        "A rewriter raised: the message names it (stable name, registration site); "
        "__cause__ is what it raised.",
        PyExc_RuntimeError, NULL);
  return rewriter_error ? PyModule_AddObjectRef(m, "RewriterError", rewriter_error) : -1;
}
