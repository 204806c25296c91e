/*
 * standin.c - how a patch looks from outside: the descriptors and
 * attribute lookups that make a patched function, method or forward bind
 * like the original, answer for it (__wrapped__, its attributes), and on
 * a thread that does not trace be the original (its class, its bound
 * methods, its pickling).  Shared by patch.c and modpatch.c.
 */
#include "glue.h"

PyObject *trw__py_bind_method(PyObject *self, PyObject *obj, PyObject *type)
{
  (void)type;
  if (!obj || obj == Py_None) {
    Py_INCREF(self);
    return self;
  }
  return PyMethod_New(self, obj);
}

PyObject *trw__py_patch_bind(PyObject *self, PyObject *obj, PyObject *type, PyObject *origin)
{
  if (trw__rewriting_here())
    return trw__py_bind_method(self, obj, type);
  descrgetfunc get = Py_TYPE(origin)->tp_descr_get;
  if (!get)
    return Py_NewRef(origin);
  return get(origin, obj == Py_None ? NULL : obj, type);
}

PyObject *trw__py_patch_getattr(PyObject *self, PyObject *name, PyObject *origin)
{
  /* What isinstance() and inspect.isfunction() ask (TorchScript does, of
   * a function it compiles): on a thread that does not trace, the
   * original's class, as for the original itself. */
  if (!trw__rewriting_here() && PyUnicode_CompareWithASCIIString(name, "__class__") == 0)
    return Py_NewRef((PyObject *)Py_TYPE(origin));
  return trw__py_stand_in_getattr(self, name, origin);
}

PyObject *trw__py_stand_in_getattr(PyObject *self, PyObject *name, PyObject *original)
{
  PyObject *r = PyObject_GenericGetAttr(self, name);
  if (r || !original || !PyErr_ExceptionMatches(PyExc_AttributeError))
    return r;
  PyErr_Clear();
  if (PyUnicode_CompareWithASCIIString(name, "__wrapped__") == 0)
    return Py_NewRef(original);
  return PyObject_GetAttr(original, name);
}

PyObject *trw__py_stand_in_reduce(PyObject *original, PyObject *proto)
{
  if (!PyFunction_Check(original))
    return PyObject_CallMethod(original, "__reduce_ex__", "O", proto);
  /* pickle saves a Python function by its name, and checks that the name
   * leads back to the very object: itemgetter(0)((original,)) gives the
   * original, pickled as it is (on a thread that does not trace, its
   * module's attribute is the original again, patch.c). */
  PyObject *operator = PyImport_ImportModule("operator");
  PyObject *getter = operator ? PyObject_CallMethod(operator, "itemgetter", "i", 0) : NULL;
  PyObject *r = getter ? Py_BuildValue("(O((O)))", getter, original) : NULL;
  Py_XDECREF(getter);
  Py_XDECREF(operator);
  return r;
}
