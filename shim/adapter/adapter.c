/* adapter.c - the facts about each torch that torchrw relies on. */
#include "adapter.h"

#include <stdio.h>
#include <string.h>

#if !defined(TRW_TORCH_MAJOR) || !defined(TRW_TORCH_MINOR) || !defined(TRW_TORCH_VERSION)
#error "CMake sets TRW_TORCH_MAJOR, TRW_TORCH_MINOR and TRW_TORCH_VERSION per runtime"
#endif

/* torch.onnx.export and torch.jit.trace reach the tracer through these. */
static const trw__py_attr trace_hooks[] = {
    {"torch._C", "_create_graph_by_tracing"},
    {"torch._C", "_create_function_from_trace"},
    {"torch._C.ScriptModule", "_create_method_from_trace"},
};
#define NHOOKS (sizeof trace_hooks / sizeof trace_hooks[0])

/* torch.export's entry points and the ONNX exporter that calls them
 * (torch/onnx/_internal/exporter/_core.py: capture with torch.export,
 * run_decompositions, translation at opset 18 at least, then conversion
 * down to the opset asked for, through onnxscript's convert_version).
 * torch.onnx.export comes first: torches without torch.export hook it
 * alone (its output file, and the end of the export for the report). */
static const trw__hook export_hooks[] = {
    {"torch.onnx", "export", TRW__HOOK_EXPORT},
    {"torch.export", "export", TRW__HOOK_CAPTURE},
    {"torch.export", "draft_export", TRW__HOOK_CAPTURE},
    {"torch.export.exported_program.ExportedProgram", "run_decompositions", TRW__HOOK_LOWER},
    {"onnxscript.version_converter", "convert_version", TRW__HOOK_CONVERT},
};
#define NEXPORT_HOOKS (sizeof export_hooks / sizeof export_hooks[0])

/* Where the exporters serialise the model, for the status line.  The
 * TorchScript exporter (torch/onnx/utils.py _export in 1.13,
 * torch/onnx/_internal/torchscript_exporter/utils.py from 2.9) turns its
 * graph into protobuf bytes with Graph._export_onnx and writes them right
 * after; torch.export's (torch/onnx/_internal/exporter/_compat.py) ends
 * with ONNXProgram.save. */
static const trw__hook write_hooks[] = {
    {"torch._C.Graph", "_export_onnx", TRW__HOOK_WRITE},
    {"torch.onnx._internal.exporter._onnx_program.ONNXProgram", "save", TRW__HOOK_WRITE},
};
#define NWRITE_HOOKS (sizeof write_hooks / sizeof write_hooks[0])

/* Before torch.export: torch.onnx.export only (its TorchScript path). */
static const trw__hook onnx_export_hook[] = {{"torch.onnx", "export", TRW__HOOK_EXPORT}};

/*
 * One row per torch where something moved, newest first; a runtime takes
 * the first row not newer than its torch.
 *
 * 2.9: torch.onnx's TorchScript exporter moved under
 *      torch.onnx._internal.torchscript_exporter (pytorch#161323); the
 *      public torch.onnx.symbolic_helper re-exports it; the newest opset
 *      it knows got its own constant (ONNX_MAX_OPSET is the dynamo
 *      exporter's since).
 *      torch.onnx.export(dynamo=True) became the default (the export goes
 *      through torch.export; its default opset is ONNX_DEFAULT_OPSET; it
 *      builds at TORCHLIB_OPSET, 18, at least and converts down).
 * 2.5: torch.onnx.export takes dynamo=; torch.export (2.1 on) is what it
 *      calls with dynamo=True.
 * 1.13: torch.onnx._globals and torch.onnx._internal.registration (the
 *      registry of symbolics by opset), ONNX_MAX_OPSET = 17; no torch.export
 *      (of the export hooks, torch.onnx.export only).
 */
static const trw__adapter rows[] = {
    {TRW_TORCH_VERSION, 2, 9, "torch.onnx._internal.torchscript_exporter._globals",
     "torch.onnx._internal.torchscript_exporter.registration",
     "torch.onnx._internal.torchscript_exporter.symbolic_helper", "torch.onnx._constants",
     "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 7, trace_hooks, NHOOKS, export_hooks,
     NEXPORT_HOOKS, write_hooks, NWRITE_HOOKS, 1, "ONNX_DEFAULT_OPSET",
     "torch.onnx._internal.exporter._constants", "TORCHLIB_OPSET"},
    {TRW_TORCH_VERSION, 2, 5, "torch.onnx._globals", "torch.onnx._internal.registration",
     "torch.onnx.symbolic_helper", "torch.onnx._constants", "ONNX_MAX_OPSET", 7, trace_hooks,
     NHOOKS, export_hooks, NEXPORT_HOOKS, write_hooks, NWRITE_HOOKS, 0, "ONNX_DEFAULT_OPSET",
     "torch.onnx._internal.exporter._constants", "TORCHLIB_OPSET"},
    {TRW_TORCH_VERSION, 1, 13, "torch.onnx._globals", "torch.onnx._internal.registration",
     "torch.onnx.symbolic_helper", "torch.onnx._constants", "ONNX_MAX_OPSET", 7, trace_hooks,
     NHOOKS, onnx_export_hook, 1, write_hooks, 1, 0, NULL, NULL, NULL},
};
#define NROWS (sizeof rows / sizeof rows[0])

const trw__adapter *trw__adapter_get(void)
{
  static trw__adapter self;
  if (!self.version) {
    size_t i = 0;
    while (i + 1 < NROWS && (rows[i].major > TRW_TORCH_MAJOR ||
                             (rows[i].major == TRW_TORCH_MAJOR && rows[i].minor > TRW_TORCH_MINOR)))
      i++;
    self = rows[i];
    self.major = TRW_TORCH_MAJOR;
    self.minor = TRW_TORCH_MINOR;
  }
  return &self;
}

int trw__adapter_series(const char *version, char *out, size_t len)
{
  unsigned major, minor;
  int used = 0;
  if (!version || sscanf(version, "%u.%u%n", &major, &minor, &used) != 2 || used <= 0)
    return -1;
  snprintf(out, len, "%u.%u", major, minor);
  return 0;
}

int trw__adapter_check_torch(const char *version, char *err, size_t len)
{
  char have[32], built[32];
  const trw__adapter *a = trw__adapter_get();
  snprintf(built, sizeof built, "%d.%d", a->major, a->minor);
  if (trw__adapter_series(version, have, sizeof have) != 0) {
    snprintf(err, len,
             "torchrw: cannot tell which torch this is (torch.__version__ is '%s'); this "
             "runtime was built for torch %s",
             version ? version : "(none)", a->version);
    return -1;
  }
  if (strcmp(have, built) != 0) {
    snprintf(err, len,
             "torchrw: this runtime was built for torch %s, but the process has torch %s; "
             "rebuild torchrw for the torch you run (cmake with -DPython3_EXECUTABLE=<that "
             "interpreter>, or pip install --no-build-isolation in its venv)",
             a->version, version);
    return -1;
  }
  return 0;
}
