/* typed_plugin.c - the registration macros keep each kind's function type.
 * Built as a plugin as it is (the build fails if correct registrations do
 * not compile); tests/CMakeLists.txt compiles it again with
 * -DTRW_TEST_MISTYPED, where a symbolic rewriter is registered as a
 * function rewriter and the compiler must refuse it. */
#include "torchrw.h"

static int plain(trw_ctx *ctx, size_t nargs, trw_value *const args[], trw_value **result)
{
  return trw_call_original(ctx, nargs, args, result);
}

static int symbolic(trw_ctx *ctx, trw_graph *g, size_t nin, trw_sym *const in[],
                    trw_sym **result)
{
  (void)ctx;
  (void)g;
  (void)nin;
  *result = in[0];
  return 0;
}

static int opset_13_on(const trw_env *env) { return trw_env_opset(env) >= 13; }

/* _EX without checkers needs no NULL; with them, up to four follow fn. */
TRW_FUNCTION_REWRITER_EX("torch.sinh", "openvino", TRW_IR_ONNX, plain);
TRW_FUNCTION_REWRITER_EX("torch.cosh", "openvino", TRW_IR_ANY, plain, opset_13_on);
TRW_SYMBOLIC_REWRITER_EX("aten::tanh", "openvino", symbolic, opset_13_on);

#ifdef TRW_TEST_MISTYPED
TRW_FUNCTION_REWRITER("torch.tanh", "openvino", symbolic);
#endif
