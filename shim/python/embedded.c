/* embedded.c - the runtime's Python modules, compiled into it
 * (shim/CMakeLists.txt embeds each file) and run, on first use, as
 * torchrw._<stem>: the torch.export path's (shim/export) and
 * TORCHRW_SAMPLE's. */
#include "glue.h"

#include <string.h>

#include "onnx_translation_py.h"
#include "opset_conversion_py.h"
#include "sample_py.h"

static struct {
  const char *stem;
  const char *file; /* for tracebacks */
  const char *source;
  PyObject *module;
} embedded[] = {
    {"onnx_translation", "shim/export/onnx_translation.py", trw__onnx_translation_py, NULL},
    {"opset_conversion", "shim/export/opset_conversion.py", trw__opset_conversion_py, NULL},
    {"sample", "shim/python/sample.py", trw__sample_py, NULL},
};

PyObject *trw__py_embedded(const char *stem)
{
  size_t i = 0;
  while (i < sizeof embedded / sizeof embedded[0] && strcmp(embedded[i].stem, stem) != 0)
    i++;
  if (i == sizeof embedded / sizeof embedded[0])
    return trw__py_raise("torchrw: no embedded module '%s'", stem);
  if (embedded[i].module)
    return embedded[i].module;
  char name[128];
  snprintf(name, sizeof name, "torchrw._%s", stem);
  PyObject *code = Py_CompileString(embedded[i].source, embedded[i].file, Py_file_input);
  PyObject *m = code ? PyModule_New(name) : NULL;
  PyObject *d = m ? PyModule_GetDict(m) : NULL;
  int ok = d && PyDict_SetItemString(d, "__builtins__", PyEval_GetBuiltins()) == 0;
  PyObject *r = ok ? PyEval_EvalCode(code, d, d) : NULL;
  Py_XDECREF(code);
  if (!r) {
    Py_XDECREF(m);
    return NULL;
  }
  Py_DECREF(r);
  embedded[i].module = m;
  return m;
}
