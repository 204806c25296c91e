/*
 * entry_points.h - the libtorch functions the preloaded shim interposes:
 * the tracer's entry, to see a trace begin and end, and the _C module's
 * initialisation, to see torch imported.  Shared by the preloaded shim
 * (plain C, no torch headers) and the runtime.
 *
 * std::pair<std::shared_ptr<TracingState>, Stack> torch::jit::tracer::trace(
 *     Stack inputs, const std::function<Stack(Stack)>& traced_fn,
 *     std::function<std::string(const Variable&)> var_name_lookup_fn,
 *     bool strict, bool force_outplace, Module* self,
 *     const std::vector<std::string>& argument_names);
 *
 * The same signature and mangled name from libtorch 1.13 (Debian 12) to
 * 2.14 (PyPI), both built with the C++11 string ABI (torch.compiled_with_
 * cxx11_abi() is True for both; the name says std::__cxx11::basic_string).
 * It is defined in libtorch_cpu.so and called from libtorch_python.so
 * through the PLT, so a preloaded definition runs first.
 *
 * In the x86-64 and AArch64 C++ ABIs the result is returned through a
 * hidden pointer and the by-value parameters are passed by invisible
 * reference, so every parameter is a pointer or a scalar and a C function
 * with this shape forwards them untouched.
 *
 * preload.map, beside this file, exports exactly these names from
 * libtorchrw.so.
 */
#ifndef TRW_ADAPTER_ENTRY_POINTS_H
#define TRW_ADAPTER_ENTRY_POINTS_H

#include <stdbool.h>

#define TRW__TRACE_SYMBOL                                                      \
  "_ZN5torch3jit6tracer5traceESt6vectorIN3c106IValueESaIS4_EERKSt8functionIF" \
  "S6_S6_EES7_IFNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEERKN2at6" \
  "TensorEEEbbPNS0_6ModuleERKS2_ISH_SaISH_EE"

/* The library that defines it, found among the loaded objects by this
 * prefix (Debian: libtorch_cpu.so.1.13; PyPI: libtorch_cpu.so). */
#define TRW__TRACE_LIBRARY "libtorch_cpu.so"

/*
 * PyObject *initModule(void): torch._C's PyInit__C returns what this
 * function of libtorch_python.so builds, calling it through the PLT; an
 * unmangled extern "C" name from torch 1.13 to 2.14.  Once it returns,
 * torch's C++ libraries are loaded and `import torch` is under way (its
 * __version__ is set, torch.export and torch.onnx are still to come).
 */
#define TRW__TORCH_INIT_SYMBOL "initModule"
#define TRW__TORCH_INIT_LIBRARY "libtorch_python.so"
typedef void *(*trw__torch_init_fn)(void);

/* torch::jit::tracer::trace as C sees it. */
typedef void *(*trw__trace_fn)(void *result, void *inputs, void *traced_fn,
                               void *lookup_fn, bool strict,
                               bool force_outplace, void *self,
                               void *argument_names);

#endif
