/*
 * Compiled with -fsyntax-only by the test builtin_macro_keeps_the_type:
 * a METH_O function registered as a built-in Python-function rewriter
 * (whose signature is METH_FASTCALL | METH_KEYWORDS) must not compile, as
 * with the public macros of include/torchrw.h.
 */
#include "../../shim/python/builtin.h"

static PyObject *one_argument(PyObject *self, PyObject *arg)
{
  (void)self;
  Py_INCREF(arg);
  return arg;
}

TRW__PY_BUILTIN("torch.Tensor.size", "ncnn", one_argument);
