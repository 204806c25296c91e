// pymodule.cpp - module rewriters written in C: a module's forward arrives
// with Python arguments; the rewriter works on trw_value handles (IValues).
// This file converts between the two and implements trw_module_*.  It is
// the Python glue's only C++, and links libtorch_python (the library that
// turns tensors into Python objects), which torch has always loaded first.

#include <Python.h>

#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/python_variable.h>

#include <cstring>
#include <string>

#include "../torch/frame.hpp"
#include "glue.h"

struct trw_module {
  PyObject* obj;
};

namespace trw {
namespace {

PyObject* tensor_type() {
  static PyObject* type = nullptr;
  if (!type) {
    PyObject* torch = PyImport_ImportModule("torch");
    type = torch ? PyObject_GetAttrString(torch, "Tensor") : nullptr;
    Py_XDECREF(torch);
  }
  return type;
}

bool is_tensor(PyObject* o) {
  PyObject* t = tensor_type();
  return t && PyObject_IsInstance(o, t) == 1;
}

// Python -> IValue for what forward arguments and module attributes hold.
bool to_ivalue(PyObject* o, c10::IValue& out) {
  if (o == Py_None) {
    out = c10::IValue();
  } else if (PyBool_Check(o)) {
    out = o == Py_True;
  } else if (PyLong_Check(o)) {
    out = static_cast<int64_t>(PyLong_AsLongLong(o));
  } else if (PyFloat_Check(o)) {
    out = PyFloat_AsDouble(o);
  } else if (PyUnicode_Check(o)) {
    const char* s = PyUnicode_AsUTF8(o);
    if (!s) return false;
    out = std::string(s);
  } else if (is_tensor(o)) {
    out = THPVariable_Unpack(o);
  } else if (PyList_Check(o) || PyTuple_Check(o)) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    PyObject** items = PySequence_Fast_ITEMS(o);
    std::vector<c10::IValue> elems;
    bool all_tensors = n > 0, all_ints = n > 0;
    for (Py_ssize_t i = 0; i < n; i++) {
      c10::IValue e;
      if (!to_ivalue(items[i], e)) return false;
      all_tensors &= e.isTensor();
      all_ints &= e.isInt();
      elems.push_back(std::move(e));
    }
    if (PyList_Check(o) && all_tensors) {
      c10::List<at::Tensor> l;
      for (auto& e : elems) l.push_back(e.toTensor());
      out = l;
    } else if (PyList_Check(o) && all_ints) {
      c10::List<int64_t> l;
      for (auto& e : elems) l.push_back(e.toInt());
      out = l;
    } else {
      out = c10::ivalue::Tuple::create(std::move(elems));
    }
  } else {
    PyErr_Format(PyExc_TypeError, "torchrw: a C module rewriter cannot take %R", o);
    return false;
  }
  return true;
}

PyObject* to_python(const c10::IValue& v) {
  if (v.isNone()) Py_RETURN_NONE;
  if (v.isBool()) return PyBool_FromLong(v.toBool());
  if (v.isInt()) return PyLong_FromLongLong(v.toInt());
  if (v.isDouble()) return PyFloat_FromDouble(v.toDouble());
  if (v.isString()) return PyUnicode_FromString(v.toStringRef().c_str());
  if (v.isTensor()) return THPVariable_Wrap(v.toTensor());
  if (v.isTuple() || v.isList()) {
    std::vector<c10::IValue> elems;
    if (v.isTuple())
      elems = v.toTupleRef().elements().vec();
    else
      for (const auto& e : v.toListRef()) elems.push_back(e);
    PyObject* out = v.isTuple() ? PyTuple_New(static_cast<Py_ssize_t>(elems.size()))
                                : PyList_New(static_cast<Py_ssize_t>(elems.size()));
    for (size_t i = 0; out && i < elems.size(); i++) {
      PyObject* e = to_python(elems[i]);
      if (!e) {
        Py_CLEAR(out);
        break;
      }
      if (v.isTuple())
        PyTuple_SET_ITEM(out, static_cast<Py_ssize_t>(i), e);
      else
        PyList_SET_ITEM(out, static_cast<Py_ssize_t>(i), e);
    }
    return out;
  }
  PyErr_Format(PyExc_TypeError, "torchrw: cannot give a %s back to Python", v.tagKind().c_str());
  return nullptr;
}

int python_failed(trw_ctx* ctx, const char* what) {
  char why[1024];
  trw__py_describe_error(why, sizeof why, 0);
  return trw_error(ctx, TRW_EOP, "%s: %s", what, why);
}

// module.a.b for a dotted name; new reference or nullptr (error set).
PyObject* attr_path(PyObject* module, const char* name) {
  Py_INCREF(module);
  PyObject* cur = module;
  std::string s(name ? name : "");
  size_t start = 0;
  while (cur && start <= s.size()) {
    size_t dot = s.find('.', start);
    std::string part = s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    PyObject* next = PyObject_GetAttrString(cur, part.c_str());
    Py_DECREF(cur);
    cur = next;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

// Calls fn(*prefix, *args) and converts the result into the call's arena.
int call_python(trw_ctx* ctx, const char* what, PyObject* fn, PyObject* first, size_t nargs,
                trw_value* const args[], trw_value** result) {
  size_t off = first ? 1 : 0;
  PyObject* tuple = PyTuple_New(static_cast<Py_ssize_t>(nargs + off));
  if (!tuple) return python_failed(ctx, what);
  if (first) {
    Py_INCREF(first);
    PyTuple_SET_ITEM(tuple, 0, first);
  }
  for (size_t i = 0; i < nargs; i++) {
    PyObject* a = to_python(args[i] ? args[i]->iv : c10::IValue());
    if (!a) {
      Py_DECREF(tuple);
      return python_failed(ctx, what);
    }
    PyTuple_SET_ITEM(tuple, static_cast<Py_ssize_t>(i + off), a);
  }
  PyObject* r = PyObject_Call(fn, tuple, nullptr);
  Py_DECREF(tuple);
  if (!r) return python_failed(ctx, what);
  c10::IValue iv;
  bool ok = to_ivalue(r, iv);
  Py_DECREF(r);
  if (!ok) return python_failed(ctx, what);
  trw_value* v = make_value(ctx, std::move(iv));
  if (!v) return trw_error(ctx, TRW_ENOMEM, "out of memory");
  if (result) *result = v;
  return 0;
}

// A plain attribute of m, new reference (or nullptr with the code set).
PyObject* module_attr(trw_ctx* ctx, trw_module* m, const char* name, int* rc) {
  *rc = 0;
  if (!m || !name) {
    *rc = trw_error(ctx, TRW_EINVAL, "module attribute: missing module or name");
    return nullptr;
  }
  PyObject* v = attr_path(m->obj, name);
  if (!v) {
    PyErr_Clear();
    *rc = trw_error(ctx, TRW_ENOTFOUND, "the module has no attribute '%s'", name);
  }
  return v;
}

}  // namespace
}  // namespace trw

using trw::frame_of;
using trw::make_value;

extern "C" {

PyObject* trw__py_module_call_c(trw__rewriter* rw, const trw_env* env, PyObject* module,
                                PyObject* forward, PyObject* const* args, Py_ssize_t nargs) {
  trw::Frame frame{c10::nullopt, c10::DispatchKeySet(), {}, module, forward, 0, 0, {}};
  trw_ctx ctx;
  std::memset(&ctx, 0, sizeof ctx);
  ctx.rw = rw;
  ctx.env = env;
  ctx.op = rw->name;
  ctx.frame = &frame;
  trw_module m{module};
  std::vector<trw_value*> values;
  int rc = 0;
  try {
    for (Py_ssize_t i = 0; i < nargs; i++) {
      c10::IValue iv;
      if (!trw::to_ivalue(args[i], iv)) {
        rc = trw::python_failed(&ctx, "forward argument");
        break;
      }
      values.push_back(make_value(&ctx, std::move(iv)));
    }
    trw_value* result = nullptr;
    if (rc == 0)
      rc = reinterpret_cast<trw_module_fn>(rw->fn)(&ctx, &m, values.size(), values.data(), &result);
    if (rc == 0 && !result) rc = trw_error(&ctx, TRW_EINVAL, "the module rewriter returned no result");
    if (rc == 0) {
      PyObject* out = trw::to_python(result->iv);
      if (out) return out;
      rc = trw::python_failed(&ctx, "the result");
    }
  } catch (const std::exception& e) {
    rc = trw_error(&ctx, TRW_EOP, "%s", e.what());
  }
  char msg[2048];
  trw__ctx_failure(&ctx, rc, msg, sizeof msg);
  PyErr_SetString(PyExc_RuntimeError, msg);
  return nullptr;
}

int trw_module_tensor(trw_ctx* ctx, trw_module* m, const char* name, trw_value** out) {
  int rc;
  PyObject* v = trw::module_attr(ctx, m, name, &rc);
  if (!v) return rc;
  if (!trw::is_tensor(v)) {
    Py_DECREF(v);
    return trw_error(ctx, TRW_ETYPE, "module attribute '%s' is not a tensor", name);
  }
  trw_value* h = make_value(ctx, THPVariable_Unpack(v));
  Py_DECREF(v);
  if (!h) return trw_error(ctx, TRW_ENOMEM, "out of memory");
  *out = h;
  return 0;
}

int trw_module_int(trw_ctx* ctx, trw_module* m, const char* name, int64_t* out) {
  int rc;
  PyObject* v = trw::module_attr(ctx, m, name, &rc);
  if (!v) return rc;
  rc = PyLong_Check(v) ? 0 : trw_error(ctx, TRW_ETYPE, "module attribute '%s' is not an int", name);
  if (rc == 0) *out = PyLong_AsLongLong(v);
  Py_DECREF(v);
  return rc;
}

int trw_module_double(trw_ctx* ctx, trw_module* m, const char* name, double* out) {
  int rc;
  PyObject* v = trw::module_attr(ctx, m, name, &rc);
  if (!v) return rc;
  rc = PyFloat_Check(v) || PyLong_Check(v)
           ? 0
           : trw_error(ctx, TRW_ETYPE, "module attribute '%s' is not a number", name);
  if (rc == 0) *out = PyFloat_AsDouble(v);
  Py_DECREF(v);
  return rc;
}

int trw_module_bool(trw_ctx* ctx, trw_module* m, const char* name, int* out) {
  int rc;
  PyObject* v = trw::module_attr(ctx, m, name, &rc);
  if (!v) return rc;
  rc = PyBool_Check(v) ? 0 : trw_error(ctx, TRW_ETYPE, "module attribute '%s' is not a bool", name);
  if (rc == 0) *out = v == Py_True;
  Py_DECREF(v);
  return rc;
}

int trw_module_string(trw_ctx* ctx, trw_module* m, const char* name, const char** out) {
  int rc;
  PyObject* v = trw::module_attr(ctx, m, name, &rc);
  if (!v) return rc;
  const char* s = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : nullptr;
  trw_value* h = s ? make_value(ctx, std::string(s)) : nullptr;
  Py_DECREF(v);
  PyErr_Clear();
  if (!h) return trw_error(ctx, TRW_ETYPE, "module attribute '%s' is not a string", name);
  *out = h->iv.toStringRef().c_str();
  return 0;
}

int trw_module_call(trw_ctx* ctx, trw_module* m, const char* name, size_t nargs,
                    trw_value* const args[], trw_value** result) {
  int rc;
  PyObject* sub = trw::module_attr(ctx, m, name, &rc);
  if (!sub) return rc;
  rc = trw::call_python(ctx, name, sub, nullptr, nargs, args, result);
  Py_DECREF(sub);
  return rc;
}

int trw_call_original_forward(trw_ctx* ctx, trw_module* m, size_t nargs, trw_value* const args[],
                              trw_value** result) {
  trw::Frame* f = frame_of(ctx);
  if (!f || !f->forward || !m)
    return trw_error(ctx, TRW_EINVAL, "trw_call_original_forward is for module rewriters");
  return trw::call_python(ctx, "the original forward", static_cast<PyObject*>(f->forward), m->obj,
                          nargs, args, result);
}

}  // extern "C"
