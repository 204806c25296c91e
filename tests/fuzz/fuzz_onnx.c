/*
 * fuzz_onnx.c - libFuzzer target for the ONNX reader and what runs on a
 * loaded model: the summary, the external data check, shape formatting and
 * the backend checks of "torchrw check".
 *
 * Built by bench/fuzz.sh with clang -fsanitize=fuzzer,address,undefined
 * from this file, the sources in tools/onnx, tools/check.c,
 * tools/check_table.c and the generated onnx.pb-c.c; or by CMake with
 * CC=clang and -DTORCHRW_FUZZ=ON.
 *
 * The capability tables come from $TORCHRW_DATA (or the compile-time
 * TORCHRW_DATA_DEFAULT); without them only the reader is exercised.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "trwonnx.h"

static json_t *tables[4];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  static const char *names[4] = {"tensorrt", "onnxruntime", "ncnn",
                                 "openvino"};
  char err[512];

  (void)argc;
  (void)argv;
  for (int i = 0; i < 4; i++)
    tables[i] = trw__check_load_table(names[i], err, sizeof(err));
  return 0;
}

static int count(const char *node, const char *what, const char *rule,
                 const char *source, void *user)
{
  /* Touch every string so a bad pointer shows up here. */
  *(size_t *)user += strlen(node) + strlen(what) + strlen(rule) +
                     strlen(source);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  trw__onnx_model *model = NULL;
  trw__onnx_summary s;
  trw__onnx_extref *refs = NULL;
  size_t nrefs = 0, sum = 0;
  char err[512], shape[256];

  /* A directory that does not exist: external data never resolves. */
  if (trw__onnx_load_buffer(data, size, "/nonexistent-torchrw-fuzz/m.onnx",
                            &model, err, sizeof(err)) != 0) {
    if (strlen(err) == 0)
      abort(); /* Every failure must say what is wrong. */
    return 0;
  }
  trw__onnx_extdata(model, &refs, &nrefs, err, sizeof(err));
  free(refs);
  if (trw__onnx_summarize(model, &s) == 0) {
    for (size_t i = 0; i < s.ninputs; i++)
      trw__onnx_shape_str(trw__onnx_vi_shape(s.inputs[i]), shape,
                          sizeof(shape));
    trw__onnx_summary_free(&s);
  }
  for (size_t i = 0; i < model->proto->graph->n_output; i++)
    trw__onnx_shape_str(trw__onnx_vi_shape(model->proto->graph->output[i]),
                        shape, sizeof(shape));
  for (int i = 0; i < 4; i++)
    if (tables[i] != NULL)
      trw__check_model(model, tables[i], count, &sum, err, sizeof(err));
  trw__onnx_free(model);
  return 0;
}
