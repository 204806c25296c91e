/*
 * torchrw.h - the one header for torchrw rewriter authors.
 *
 * A C plugin includes this header and nothing else from torchrw, is built as
 * a shared library, and is named in TORCHRW_PLUGINS.  Its rewriters register
 * themselves when the plugin is loaded:
 *
 *     static int repeat_static(trw_ctx *ctx, size_t nargs,
 *                              trw_value *const args[], trw_value **result);
 *     TRW_FUNCTION_REWRITER("torch.Tensor.repeat", "tensorrt", repeat_static);
 *
 * Conventions
 *   - Functions that can fail return 0 or a negative TRW_E* code.  There is
 *     no global error state; a rewriter explains a failure with trw_error().
 *   - Values handed to a rewriter, and values it creates, belong to the
 *     current rewriter call and are released when the rewriter returns.  Do
 *     not keep them across calls.
 *   - No function here exits, aborts or throws into the caller.
 *   - Threads: registration (trw_register and the macros) may run on any
 *     thread, but not while an export is being rewritten (TRW_EPHASE).  A
 *     rewriter runs on the thread that traces; everything it is handed, and
 *     every trw_* call on those, belongs to that thread and that call.
 *   - Lifetimes: a string or pointer returned by a trw_ctx_, trw_cfg_ or
 *     trw_env_ call lives as long as what it was asked of: the rewriter
 *     call for trw_ctx_ and trw_env_, the deployment config for trw_cfg_
 *     (TORCHRW_CONFIG: the process; a RewriterContext's cfg: its block, so
 *     strings from it die with the context).  Copy what must last longer.
 *   - Versions: TRW_API_VERSION is the version of this API.  Every
 *     registration carries the version and struct size it was built with;
 *     a library of another version refuses it, naming the plugin and both
 *     versions, instead of misreading it.
 */
#ifndef TORCHRW_H
#define TORCHRW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TRW_API __attribute__((visibility("default")))
#define TRW_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TRW_API
#define TRW_PRINTF(f, a)
#endif

#define TRW_VERSION_MAJOR 0
#define TRW_VERSION_MINOR 1
/* Bumped when a change to this header breaks plugins built before it. */
#define TRW_API_VERSION 2

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

/* X(name, message): the one table of error codes. */
#define TRW_ERRNO_MAP(X)                                                       \
  X(EINVAL, "invalid argument")                                                \
  X(ENOMEM, "out of memory")                                                   \
  X(EBACKEND, "unknown backend")                                               \
  X(ENAME, "invalid rewriter name")                                            \
  X(EPHASE, "not allowed while rewriting is active")                           \
  X(ECONFIG, "bad deployment config")                                          \
  X(ENOTFOUND, "not found")                                                    \
  X(ETYPE, "value has the wrong type")                                         \
  X(ERANGE, "index out of range")                                              \
  X(EOP, "operator call failed")                                               \
  X(EPLUGIN, "plugin could not be loaded")                                     \
  X(EPYTHON, "python error")                                                   \
  X(ERECURSION, "rewriters nested too deeply")                                 \
  X(EIO, "i/o error")                                                          \
  X(ENOTORCH, "libtorch is not loaded")                                       \
  X(ESYMBOLIC, "value not known while torch.export traces")                   \
  X(EVERSION, "built for another torchrw API version")

enum {
  TRW_OK = 0,
#define TRW__ERRNO_ENUM(name, msg) TRW_##name,
  TRW__ERRNO_FIRST = -100,
  TRW_ERRNO_MAP(TRW__ERRNO_ENUM)
#undef TRW__ERRNO_ENUM
  TRW__ERRNO_END
};

/* The code's name ("TRW_EINVAL") and message; "unknown error" for others. */
TRW_API const char *trw_err_name(int code);
TRW_API const char *trw_strerror(int code);

/* ------------------------------------------------------------------------ */
/* Opaque types                                                              */

typedef struct trw_ctx trw_ctx;       /* context of one rewriter call */
typedef struct trw_value trw_value;   /* a torch value (IValue) */
typedef struct trw_tensor trw_tensor; /* a tensor inside a value */
typedef struct trw_cfg trw_cfg;       /* the deployment config */
typedef struct trw_env trw_env;       /* what checkers may look at */

typedef enum trw_kind {
  TRW_KIND_FUNCTION = 0,
  TRW_KIND_MODULE = 1,
  TRW_KIND_SYMBOLIC = 2
} trw_kind;

typedef enum trw_dtype {
  TRW_DTYPE_UNKNOWN = 0,
  TRW_DTYPE_FLOAT32,
  TRW_DTYPE_FLOAT64,
  TRW_DTYPE_FLOAT16,
  TRW_DTYPE_BFLOAT16,
  TRW_DTYPE_INT64,
  TRW_DTYPE_INT32,
  TRW_DTYPE_INT16,
  TRW_DTYPE_INT8,
  TRW_DTYPE_UINT8,
  TRW_DTYPE_BOOL
} trw_dtype;

typedef enum trw_ir {
  TRW_IR_ANY = 0,
  TRW_IR_ONNX = 1,
  TRW_IR_TORCHSCRIPT = 2
} trw_ir;

/* How the model is being captured: torch's tracer (torch.jit.trace, and
 * torch.onnx.export's TorchScript exporter), or torch.export (its
 * ExportedProgram, and torch.onnx.export's default from torch 2.9). */
typedef enum trw_exporter {
  TRW_EXPORTER_TORCHSCRIPT = 0,
  TRW_EXPORTER_TORCH_EXPORT = 1
} trw_exporter;

/* ------------------------------------------------------------------------ */
/* Registration                                                              */

/*
 * A function rewriter for a torch operator.  It receives the operator's
 * arguments in schema order (defaults filled in) and stores its result in
 * *result (a tensor, or a tuple for operators with several outputs).  It
 * returns 0, or a negative code after trw_error() has said what went wrong;
 * the export then fails with that message, naming the rewriter.
 */
typedef int (*trw_function_fn)(trw_ctx *ctx, size_t nargs,
                               trw_value *const args[], trw_value **result);

/* A checker: nonzero when the rewriter applies in this environment. */
typedef int (*trw_checker_fn)(const trw_env *env);

typedef struct trw_rewriter_def {
  size_t size;      /* sizeof(trw_rewriter_def) where it was built */
  int api_version;  /* TRW_API_VERSION where it was built */
  trw_kind kind;
  const char *name;    /* "torch.Tensor.repeat", "aten::topk", ... */
  /* "tensorrt", ..., or NULL / "default"; "tensorrt:<8.6" is for those
   * versions only (comma-separated items, each a dotted version after an
   * optional <, <=, >, >= or ==, all of which must hold; a bare version
   * also matches the versions under it: "10" holds 10.15).  Without a
   * version the rewriter is for every version of the backend. */
  const char *backend;
  trw_ir ir;
  trw_checker_fn checkers[5]; /* up to 4, NULL-terminated */
  void *fn; /* the kind's own type: trw_function_fn, trw_module_fn or
               trw_symbolic_fn (the macros check it when they compile) */
  const char *file;
  int line;
  const char *checker_names; /* "opset_below_17" as written; for listings */
  /* Handed to the rewriter as trw_ctx_user_data(); free_user_data (may be
   * NULL) is called with it once the registration is replaced or torchrw
   * unloads, or at once when the registration is refused. */
  void *user_data;
  void (*free_user_data)(void *user_data);
} trw_rewriter_def;

/*
 * Registers a rewriter.  The definition is copied; its strings must stay
 * valid while the library is loaded (literals are).  Registering a key
 * (kind, name, backend, ir, checkers) that exists replaces the earlier
 * rewriter and logs one warning naming both sites.  A rewriter of the
 * same target and backend as one of torchrw's built-ins outranks it.
 *
 * Returns 0, or
 *   TRW_EINVAL   def, def->fn or def->file is NULL, or kind/ir is unknown;
 *   TRW_EVERSION def was built for another TRW_API_VERSION (or size);
 *   TRW_ENAME    the name is empty, has spaces, or (for a function
 *                rewriter of an operator) is not "aten::op[.overload]",
 *                "torch.op" or "torch.Tensor.op";
 *   TRW_EBACKEND the backend is not one of trw_known_backends(), or its
 *                version constraint is malformed or names a backend that
 *                has no versions ("default:8");
 *   TRW_EPHASE   rewriting is active on some thread (register before the
 *                export starts);
 *   TRW_ENOMEM.
 * Every failure is also logged with the registration site.  An operator
 * name this torch does not have is refused at the first trace, naming the
 * site, and fails the export.
 */
TRW_API int trw_register(const trw_rewriter_def *def);

/* The backend spellings registration and TORCHRW_BACKEND accept, as one
 * comma-separated string ("default, tensorrt, onnxruntime, ..."). */
TRW_API const char *trw_known_backends(void);

#define TRW__CAT2(a, b) a##b
#define TRW__CAT(a, b) TRW__CAT2(a, b)

/* What the macros below register with: trw_register, except for torchrw's
 * own built-in rewriters, whose build marks them so (a plugin's rewriter
 * of the same target and backend outranks a built-in). */
#ifdef TRW__REGISTER_FN
int TRW__REGISTER_FN(const trw_rewriter_def *def);
#else
#define TRW__REGISTER_FN trw_register
#endif

/* fn as type, or a compile error when it is a function of another type
 * (a symbolic registered as a function rewriter). */
#ifdef __cplusplus
#define TRW__TYPED(type, fn) static_cast<type>(fn)
#else
#define TRW__TYPED(type, fn) _Generic((fn), type: (fn))
#endif
#define TRW__FIRST(a, ...) a
#define TRW__REST(a, ...) __VA_ARGS__
#define TRW__STR(...) #__VA_ARGS__
#define TRW__STRX(...) TRW__STR(__VA_ARGS__)

/* Registers fn (of type type_) when the library that holds this line is
 * loaded; ... are its checkers, NULL-terminated. */
#define TRW_REWRITER_DEF(kind_, type_, name_, backend_, ir_, fn_, ...)          \
  __attribute__((constructor)) static void TRW__CAT(trw__reg_, __LINE__)(void) \
  {                                                                            \
    static const trw_rewriter_def def = {                                      \
        sizeof(trw_rewriter_def), TRW_API_VERSION, kind_, name_, backend_, ir_, \
        {__VA_ARGS__}, (void *)TRW__TYPED(type_, fn_), __FILE__, __LINE__,       \
        TRW__STRX(__VA_ARGS__), NULL, NULL};                                    \
    (void)TRW__REGISTER_FN(&def);                                              \
  }

/* TRW_FUNCTION_REWRITER("torch.Tensor.repeat", "tensorrt", repeat_static); */
#define TRW_FUNCTION_REWRITER(name, backend, fn)                               \
  TRW_FUNCTION_REWRITER_EX(name, backend, TRW_IR_ANY, fn)

/* The same, for one IR, with up to four checkers after fn:
 * TRW_FUNCTION_REWRITER_EX("torch.topk", "default", TRW_IR_ONNX, fn);
 * TRW_FUNCTION_REWRITER_EX("torch.roll", NULL, TRW_IR_ANY, fn, below_opset_13); */
#define TRW_FUNCTION_REWRITER_EX(name, backend, ir, ...)                       \
  TRW_REWRITER_DEF(TRW_KIND_FUNCTION, trw_function_fn, name, backend, ir,       \
                   TRW__FIRST(__VA_ARGS__, 0), TRW__REST(__VA_ARGS__, NULL))    \
  struct trw__swallow_semicolon

/* ------------------------------------------------------------------------ */
/* What a rewriter fixes, for `torchrw check`                                */

/* That the rewriter registered as name for backend removes the violations
 * `torchrw check --backend backend` reports for ONNX operator op (its
 * op_type, "TopK") whose rule begins with rule ("" for every rule of op).
 * The rules are check's sentences: "operator is not supported",
 * "input 1 ('K') must be ...", "attribute mode=...". */
typedef struct trw_fixes_def {
  size_t size;      /* sizeof(trw_fixes_def) where it was built */
  int api_version;  /* TRW_API_VERSION where it was built */
  const char *name;    /* the rewriter's name, as registered */
  const char *backend; /* its backend and versions, as registered ("tensorrt:<8.6";
                        * NULL: "default") */
  const char *op;      /* ONNX op_type */
  const char *rule;    /* a prefix of check's rule, "" for any */
  const char *file;
  int line;
} trw_fixes_def;

/*
 * Records a trw_fixes_def (copied; its strings must stay valid while the
 * library is loaded).  It is data for listings (`torchrw list --json`,
 * `torchrw check`), never consulted while exporting.
 *
 * Returns 0, or
 *   TRW_EINVAL   def, its name, op, rule or file is NULL;
 *   TRW_EVERSION def was built for another TRW_API_VERSION (or size);
 *   TRW_EBACKEND the backend is not one of trw_known_backends();
 *   TRW_ENOMEM.
 * Failures are logged with the declaration's site.
 */
TRW_API int trw_register_fixes(const trw_fixes_def *def);

/* TRW_FIXES("torch.topk", "tensorrt", "TopK", "input 1 "); next to the
 * registration it describes. */
#define TRW_FIXES(name_, backend_, op_, rule_)                                 \
  __attribute__((constructor)) static void TRW__CAT(trw__fix_, __LINE__)(void) \
  {                                                                            \
    static const trw_fixes_def def = {sizeof(trw_fixes_def), TRW_API_VERSION,  \
                                      name_, backend_, op_, rule_, __FILE__,   \
                                      __LINE__};                               \
    (void)trw_register_fixes(&def);                                            \
  }                                                                            \
  struct trw__swallow_semicolon

/* ------------------------------------------------------------------------ */
/* The environment, for checkers                                             */

TRW_API const char *trw_env_backend(const trw_env *env);
TRW_API trw_ir trw_env_ir(const trw_env *env);
TRW_API int trw_env_opset(const trw_env *env); /* 0 outside ONNX export */
/* The engine version exported for ("8.5" under TORCHRW_BACKEND=tensorrt:8.5;
 * the newest torchrw has a table of under a bare name, "10.15"; "" for a
 * backend without versions).  Static storage. */
TRW_API const char *trw_env_backend_version(const trw_env *env);
TRW_API trw_exporter trw_env_exporter(const trw_env *env);
/* "torchscript" or "torch.export". */
TRW_API const char *trw_exporter_name(trw_exporter exporter);
/* Nonzero when the running torch is at least major.minor. */
TRW_API int trw_env_torch_at_least(const trw_env *env, int major, int minor);
TRW_API const trw_cfg *trw_env_cfg(const trw_env *env);

/* ------------------------------------------------------------------------ */
/* The context of a rewriter call                                            */

TRW_API const trw_cfg *trw_ctx_cfg(const trw_ctx *ctx);
TRW_API const char *trw_ctx_backend(const trw_ctx *ctx); /* active backend */
/* Its engine version, as trw_env_backend_version. */
TRW_API const char *trw_ctx_backend_version(const trw_ctx *ctx);
TRW_API trw_ir trw_ctx_ir(const trw_ctx *ctx);
TRW_API int trw_ctx_opset(const trw_ctx *ctx);
TRW_API trw_exporter trw_ctx_exporter(const trw_ctx *ctx);
/* The rewriter's stable name, "torch.Tensor.repeat@tensorrt". */
TRW_API const char *trw_ctx_name(const trw_ctx *ctx);
/* Where the rewriter was registered. */
TRW_API const char *trw_ctx_file(const trw_ctx *ctx);
TRW_API int trw_ctx_line(const trw_ctx *ctx);
/* The user_data of the rewriter's registration (NULL if none). */
TRW_API void *trw_ctx_user_data(const trw_ctx *ctx);
/* The operator being rewritten, "aten::repeat" or "aten::squeeze.dim". */
TRW_API const char *trw_ctx_op(const trw_ctx *ctx);

/*
 * Records why the rewriter fails and returns code, so that a rewriter can
 * write `return trw_error(ctx, TRW_EINVAL, "expected %d args", 2);`.
 * The export fails with "torchrw: <name> (<file>:<line>): <message>".
 */
TRW_API int trw_error(trw_ctx *ctx, int code, const char *fmt, ...)
    TRW_PRINTF(3, 4);

/* Logs through torchrw's log (prefix "torchrw: ", TORCHRW_LOG level). */
TRW_API void trw_log_warn(trw_ctx *ctx, const char *fmt, ...)
    TRW_PRINTF(2, 3);
TRW_API void trw_log_info(trw_ctx *ctx, const char *fmt, ...)
    TRW_PRINTF(2, 3);

/* ------------------------------------------------------------------------ */
/* Calling operators                                                         */

/*
 * Calls a torch operator through the dispatcher, so that it is traced and,
 * if it has a rewriter of its own, rewritten.  op is "aten::unsqueeze" or
 * "aten::squeeze.dim"; without an overload, the first overload whose schema
 * accepts the arguments is used.  Trailing arguments with defaults may be
 * left out.  *result receives the single output, a tuple for several, or
 * None for none.
 *
 * Returns 0, or
 *   TRW_ENOTFOUND no such operator, or no overload accepts the arguments;
 *   TRW_EOP       the operator raised (the message is kept for trw_error);
 *   TRW_ERECURSION rewriters nested more than 64 deep.
 */
TRW_API int trw_call(trw_ctx *ctx, const char *op, size_t nargs,
                     trw_value *const args[], trw_value **result);

/* Calls the operator being rewritten without any rewriter: the original
 * operator is recorded in the graph.  Same returns as trw_call. */
TRW_API int trw_call_original(trw_ctx *ctx, size_t nargs,
                              trw_value *const args[], trw_value **result);

/*
 * Hands the call to the original operator, with the arguments the rewriter
 * was given, and says at info level (TORCHRW_LOG=info) why the rewriter
 * does not apply to it: "torchrw: <name> (<file>:<line>) leaves
 * aten::pad to the original: <why>".  A rewriter that meets a call it
 * cannot rewrite returns this instead of failing the export.  Same
 * returns as trw_call_original.
 */
TRW_API int trw_decline(trw_ctx *ctx, size_t nargs, trw_value *const args[],
                        trw_value **result, const char *fmt, ...)
    TRW_PRINTF(5, 6);

/*
 * Whether argument `index` of the operator call being rewritten is a
 * constant of the graph: 1 when it is, 0 when torch's tracer computes it
 * from traced values, as it does for an int or an int list the model
 * computed from a tensor's sizes while tracing (`F.pad(x, (0, W % 7))`
 * with W from x.shape).  Reading such an argument gives the example's
 * value, and a rewrite built on it pins the graph to the example.  The
 * original still gets it as computed when the rewriter passes it on
 * unchanged (the handle it was given).  A tensor argument gives 0.
 * Outside the TorchScript tracer every readable argument is constant
 * (under torch.export, a size it does not know is a SymInt, which
 * trw_get_int does not read): 1.
 * Returns a negative code: TRW_EINVAL for a context that is not an
 * operator call's, TRW_ERANGE past the last argument.
 */
TRW_API int trw_trace_arg_is_constant(trw_ctx *ctx, size_t index);

/* ------------------------------------------------------------------------ */
/* Values                                                                    */

typedef enum trw_value_kind {
  TRW_VALUE_NONE = 0,
  TRW_VALUE_TENSOR,
  TRW_VALUE_INT,
  TRW_VALUE_DOUBLE,
  TRW_VALUE_BOOL,
  TRW_VALUE_STRING,
  TRW_VALUE_INTS,    /* int[] */
  TRW_VALUE_DOUBLES, /* float[] */
  TRW_VALUE_TENSORS, /* Tensor[] */
  TRW_VALUE_TUPLE,
  TRW_VALUE_OTHER
} trw_value_kind;

TRW_API trw_value_kind trw_value_kind_of(const trw_value *v);

/* Constructors; the value belongs to the current call.  NULL on ENOMEM. */
TRW_API trw_value *trw_none(trw_ctx *ctx);
TRW_API trw_value *trw_int(trw_ctx *ctx, int64_t i);
TRW_API trw_value *trw_double(trw_ctx *ctx, double d);
TRW_API trw_value *trw_bool(trw_ctx *ctx, int b);
TRW_API trw_value *trw_ints(trw_ctx *ctx, const int64_t *v, size_t n);
TRW_API trw_value *trw_doubles(trw_ctx *ctx, const double *v, size_t n);
TRW_API trw_value *trw_string(trw_ctx *ctx, const char *s);
TRW_API trw_value *trw_tensors(trw_ctx *ctx, trw_value *const tensors[],
                               size_t n);
/* A ScalarType argument (the dtype= of aten::to, aten::full, ...); NULL for
 * TRW_DTYPE_UNKNOWN. */
TRW_API trw_value *trw_dtype_value(trw_ctx *ctx, trw_dtype dtype);

/* Readers.  Each returns 0, or TRW_ETYPE when the value is of another
 * kind (an int is accepted where a double is asked, and a bool where an
 * int is asked), or TRW_ERANGE when buf is too small (then *n is the
 * length needed). */
TRW_API int trw_get_int(const trw_value *v, int64_t *out);
TRW_API int trw_get_double(const trw_value *v, double *out);
TRW_API int trw_get_bool(const trw_value *v, int *out);
TRW_API int trw_get_ints(const trw_value *v, int64_t *buf, size_t cap,
                         size_t *n);
/* The string of a string value, owned by the value. */
TRW_API int trw_get_string(const trw_value *v, const char **out);
/* Nonzero for None (or a NULL handle). */
TRW_API int trw_is_none(const trw_value *v);

/* Length of a tuple or list value; TRW_ETYPE for others. */
TRW_API int trw_len(const trw_value *v, size_t *n);
/* Element i of a tuple or list, owned by the call; NULL if out of range. */
TRW_API trw_value *trw_item(trw_ctx *ctx, const trw_value *v, size_t i);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */


/* The tensor inside a value, or NULL if the value is not a tensor. */
TRW_API const trw_tensor *trw_value_tensor(const trw_value *v);
/* Number of dimensions; -1 for an undefined tensor. */
TRW_API int trw_tensor_dim(const trw_tensor *t);
/* Size of dimension i (negative i counts from the end) of the example
 * being traced: a constant in the exported graph.  For a size that follows
 * the input at run time, compute it in the trace (aten::_shape_as_tensor
 * then aten::select.int give a 0-dim tensor) and, where an operator takes
 * an int, hand it over with trw_trace_set_input (below): an int read from
 * aten::size.int is recorded as a constant.  Returns 0, TRW_ERANGE, or
 * TRW_ESYMBOLIC for a dimension torch.export keeps symbolic (dynamic). */
TRW_API int trw_tensor_size(const trw_tensor *t, int i, int64_t *out);
TRW_API trw_dtype trw_tensor_dtype(const trw_tensor *t);
TRW_API const char *trw_dtype_name(trw_dtype d);

/* ------------------------------------------------------------------------ */
/* Deployment config (TORCHRW_CONFIG, JSON)                                  */

/*
 * Lookups by dotted path ("onnx_config.opset_version",
 * "codebase_config.post_processing.max_output_boxes_per_class"); a numeric
 * segment (decimal digits only) indexes an array
 * ("onnx_config.input_names.0").  No segment is empty: "", ".a", "a..b" and
 * "a." name nothing, and a key holding a dot cannot be reached.  A NULL
 * cfg, a missing path or a value of another type gives the default.  Strings are
 * owned by the config and live as long as the process.
 */
TRW_API int trw_cfg_has(const trw_cfg *cfg, const char *path);
TRW_API int64_t trw_cfg_get_int(const trw_cfg *cfg, const char *path,
                                int64_t def);
TRW_API double trw_cfg_get_double(const trw_cfg *cfg, const char *path,
                                  double def);
TRW_API int trw_cfg_get_bool(const trw_cfg *cfg, const char *path, int def);
TRW_API const char *trw_cfg_get_string(const trw_cfg *cfg, const char *path,
                                       const char *def);

/* ------------------------------------------------------------------------ */
/* Symbolic rewriters: the ONNX mapping of an operator or autograd Function  */

typedef struct trw_graph trw_graph; /* the ONNX graph being built (torch's g) */
typedef struct trw_sym trw_sym;     /* a value in it (a torch._C.Value) */

/*
 * A symbolic rewriter.  in[] are the operator's inputs as torch passes them
 * to symbolics (tensor inputs and constants; a missing optional input is
 * None, see trw_sym_is_none).  It stores the output in *result (for several
 * outputs, a tuple from trw_g_tuple) and returns 0, or a negative code
 * after trw_error(); the export then fails with that message.
 */
typedef int (*trw_symbolic_fn)(trw_ctx *ctx, trw_graph *g, size_t nin,
                               trw_sym *const in[], trw_sym **result);

/*
 * TRW_SYMBOLIC_REWRITER("squeeze", NULL, squeeze_static);
 * name is a torch operator ("squeeze", "aten::squeeze", "::squeeze") or
 * the full path of a torch.autograd.Function subclass ("pkg.ops.MyOp").
 */
#define TRW_SYMBOLIC_REWRITER(name, backend, fn)                               \
  TRW_SYMBOLIC_REWRITER_EX(name, backend, fn)
/* With up to four checkers after fn. */
#define TRW_SYMBOLIC_REWRITER_EX(name, backend, ...)                           \
  TRW_REWRITER_DEF(TRW_KIND_SYMBOLIC, trw_symbolic_fn, name, backend, TRW_IR_ANY, \
                   TRW__FIRST(__VA_ARGS__, 0), TRW__REST(__VA_ARGS__, NULL))    \
  struct trw__swallow_semicolon

typedef enum trw_attr_kind {
  TRW_ATTR_I,  /* int64 */
  TRW_ATTR_F,  /* float */
  TRW_ATTR_S,  /* string */
  TRW_ATTR_IS, /* int64[] */
  TRW_ATTR_FS, /* float[] */
  TRW_ATTR_T   /* tensor */
} trw_attr_kind;

/* A node attribute.  Build them with the TRW_ATTR_* macros below. */
typedef struct trw_attr {
  const char *name;
  trw_attr_kind kind;
  int64_t i;
  double f;
  const char *s;
  const int64_t *ints;
  const double *floats;
  size_t n;             /* length of ints/floats; elements of a tensor */
  const void *data;     /* tensor: n elements of dtype, row-major */
  trw_dtype dtype;      /* tensor */
  const int64_t *dims;  /* tensor shape (NULL with ndims 0: a scalar) */
  size_t ndims;
} trw_attr;

#define TRW_ATTR_INT(nm, v) ((trw_attr){.name = (nm), .kind = TRW_ATTR_I, .i = (v)})
#define TRW_ATTR_FLOAT(nm, v) ((trw_attr){.name = (nm), .kind = TRW_ATTR_F, .f = (v)})
#define TRW_ATTR_STRING(nm, v) ((trw_attr){.name = (nm), .kind = TRW_ATTR_S, .s = (v)})
#define TRW_ATTR_INTS(nm, v, len)                                              \
  ((trw_attr){.name = (nm), .kind = TRW_ATTR_IS, .ints = (v), .n = (len)})
#define TRW_ATTR_FLOATS(nm, v, len)                                            \
  ((trw_attr){.name = (nm), .kind = TRW_ATTR_FS, .floats = (v), .n = (len)})
#define TRW_ATTR_TENSOR(nm, ptr, dt, shape, rank, count)                        \
  ((trw_attr){.name = (nm), .kind = TRW_ATTR_T, .data = (ptr), .dtype = (dt), \
              .dims = (shape), .ndims = (rank), .n = (count)})

/*
 * Adds a node to g and returns its output (owned by the call), or NULL
 * after recording the error in ctx.  op is "Squeeze" (standard ONNX) or
 * "domain::Op" for a custom domain ("trw::TopKStatic", "com.example::X").
 * A NULL entry in in[] is an omitted optional input.  trw_g_op_n returns
 * nout outputs in out[] (0, or a negative code).
 */
TRW_API trw_sym *trw_g_op(trw_ctx *ctx, trw_graph *g, const char *op,
                          size_t nin, trw_sym *const in[],
                          const trw_attr *attrs, size_t nattrs);
TRW_API int trw_g_op_n(trw_ctx *ctx, trw_graph *g, const char *op, size_t nin,
                       trw_sym *const in[], const trw_attr *attrs,
                       size_t nattrs, size_t nout, trw_sym *out[]);

/* Constant nodes: an int64 1-D tensor, a float scalar, any tensor. */
TRW_API trw_sym *trw_g_const_ints(trw_ctx *ctx, trw_graph *g,
                                  const int64_t *v, size_t n);
TRW_API trw_sym *trw_g_const_float(trw_ctx *ctx, trw_graph *g, double v);
TRW_API trw_sym *trw_g_constant(trw_ctx *ctx, trw_graph *g, const void *data,
                                trw_dtype dtype, const int64_t *dims,
                                size_t ndims);
/* Several values as one result (operators with several outputs). */
TRW_API trw_sym *trw_g_tuple(trw_ctx *ctx, trw_graph *g, size_t n,
                             trw_sym *const items[]);

/* Nonzero for an omitted input (None) or NULL. */
TRW_API int trw_sym_is_none(const trw_sym *v);
/* The value of a constant input, as torch's _get_const reads it: 0, or
 * TRW_ETYPE when the input is not a constant of that kind. */
TRW_API int trw_sym_const_int(const trw_sym *v, int64_t *out);
TRW_API int trw_sym_const_double(const trw_sym *v, double *out);
TRW_API int trw_sym_const_ints(const trw_sym *v, int64_t *buf, size_t cap,
                               size_t *n);
/* Rank of a tensor value (its type's, or a constant's), -1 when unknown. */
TRW_API int trw_sym_rank(const trw_sym *v);
/* Static size of dimension i (a constant's sizes are static): 0,
 * TRW_ENOTFOUND when it is dynamic or unknown, TRW_ERANGE when i is out
 * of range. */
TRW_API int trw_sym_size(const trw_sym *v, int i, int64_t *out);
TRW_API trw_dtype trw_sym_dtype(const trw_sym *v);
/* The items of a list input (a Tensor?[] such as index_put's indices, made
 * by prim::ListConstruct), as handles of g: 0, TRW_ETYPE when v is not
 * such a list, TRW_ERANGE when it has more than cap (*n says how many). */
TRW_API int trw_sym_list(trw_graph *g, const trw_sym *v, trw_sym **items, size_t cap,
                         size_t *n);

/* Calls the symbolic the rewriter replaces (torch's own for operators, the
 * Function's previous `symbolic` for Functions).  TRW_ENOTFOUND when there
 * is none. */
TRW_API int trw_call_original_symbolic(trw_ctx *ctx, trw_graph *g, size_t nin,
                                       trw_sym *const in[], trw_sym **result);

/* Hands the node to the original symbolic, as trw_call_original_symbolic,
 * and says at info level why the rewriter does not apply to it:
 * "torchrw: <name> (<file>:<line>) leaves squeeze to the original symbolic:
 * <why>".  Same returns. */
TRW_API int trw_decline_symbolic(trw_ctx *ctx, trw_graph *g, size_t nin,
                                 trw_sym *const in[], trw_sym **result,
                                 const char *fmt, ...) TRW_PRINTF(6, 7);

/* ------------------------------------------------------------------------ */
/* Module rewriters: the forward of every instance of an nn.Module class     */

typedef struct trw_module trw_module; /* the instance being called */

/*
 * A module rewriter runs instead of forward for every instance of the class
 * (and subclasses, the nearest registered class winning) while a model is
 * traced.  args are forward's positional arguments; *result its output.
 */
typedef int (*trw_module_fn)(trw_ctx *ctx, trw_module *m, size_t nargs,
                             trw_value *const args[], trw_value **result);

/* TRW_MODULE_REWRITER("torchvision.ops.misc.FrozenBatchNorm2d", "tensorrt", fn); */
#define TRW_MODULE_REWRITER(class_path, backend, fn)                           \
  TRW_REWRITER_DEF(TRW_KIND_MODULE, trw_module_fn, class_path, backend, TRW_IR_ANY, \
                   fn, NULL)                                                   \
  struct trw__swallow_semicolon

/* A parameter or buffer by (dotted) name: "weight", "conv1.bias".  0, or
 * TRW_ENOTFOUND, or TRW_ETYPE when it is not a tensor. */
TRW_API int trw_module_tensor(trw_ctx *ctx, trw_module *m, const char *name,
                              trw_value **out);
/* Plain attributes ("eps", "stride", "mode").  0, TRW_ENOTFOUND or
 * TRW_ETYPE.  Strings are owned by the call. */
TRW_API int trw_module_int(trw_ctx *ctx, trw_module *m, const char *name,
                           int64_t *out);
TRW_API int trw_module_double(trw_ctx *ctx, trw_module *m, const char *name,
                              double *out);
TRW_API int trw_module_bool(trw_ctx *ctx, trw_module *m, const char *name,
                            int *out);
TRW_API int trw_module_string(trw_ctx *ctx, trw_module *m, const char *name,
                              const char **out);
/* Calls the submodule at a dotted name ("head.conv") with args. */
TRW_API int trw_module_call(trw_ctx *ctx, trw_module *m, const char *name,
                            size_t nargs, trw_value *const args[],
                            trw_value **result);
/* Calls the forward the rewriter replaces. */
TRW_API int trw_call_original_forward(trw_ctx *ctx, trw_module *m,
                                      size_t nargs, trw_value *const args[],
                                      trw_value **result);

/* ------------------------------------------------------------------------ */
/* Added for built-in rewriters                                              */

/*
 * Replaces input `index` of the graph node that the tracer recorded for the
 * operator call whose result is `output` (the node of its first tensor), so
 * that the exported graph takes `value` there instead of what the call was
 * given.  `index` is the argument's position in the operator's schema.
 * `value` is either a tensor computed in the trace, which makes the input
 * follow the input sizes at run time (converted with aten::Int, aten::Float
 * or aten::ScalarImplicit when the node expects an int, a float or a
 * Scalar), or a constant (None, int, double, bool, int list, float list),
 * which also overrides sizes that torch's tracer had stashed for Python
 * arguments.  The caller is
 * responsible for `value` agreeing with what the call computed on the
 * example.  Outside a trace it does nothing and returns 0.
 *
 * Returns 0, or
 *   TRW_EINVAL    a NULL argument, or `output` holds no tensor;
 *   TRW_ENOTFOUND `output` was not produced by a recorded node;
 *   TRW_ERANGE    the node has no input `index`;
 *   TRW_ETYPE     `value` is of a kind that cannot be a graph input;
 *   TRW_EOP       libtorch refused the edit.
 * Each failure is recorded with trw_error().
 */
TRW_API int trw_trace_set_input(trw_ctx *ctx, trw_value *output, size_t index,
                                trw_value *value);

/*
 * As trw_trace_set_input, for an input that takes an int list: the graph
 * gets a list of `n` elements, each either an int (a constant) or a 0-dim
 * integer tensor computed in the trace (the element follows the input
 * sizes at run time), such as trw_trace_arg_element gives.  So a rewrite
 * can keep the sizes the model computed while tracing and still add
 * constants of its own around them.  Returns as trw_trace_set_input;
 * TRW_ETYPE for an element of another kind.
 */
TRW_API int trw_trace_set_input_ints(trw_ctx *ctx, trw_value *output, size_t index,
                                     trw_value *const elems[], size_t n);

/*
 * Argument `index` of the operator call being rewritten, or element `elem`
 * of it when it is an int list, as torch's tracer computed it: a 0-dim
 * int64 tensor computed in the trace, holding the example's value, when
 * the model computed it from traced sizes (trw_trace_arg_is_constant says
 * 0); otherwise, and outside the TorchScript tracer, the int itself.  For
 * trw_trace_set_input and trw_trace_set_input_ints.  Returns NULL after
 * trw_error(): TRW_EINVAL outside an operator call, TRW_ERANGE past the
 * last argument or element, TRW_ETYPE for an argument that is not an int
 * or an int list.
 */
TRW_API trw_value *trw_trace_arg_element(trw_ctx *ctx, size_t index, size_t elem);

/*
 * Whether input `index` of the graph node recorded for `output` (found as
 * for trw_trace_set_input) is a constant: 1 when it is, 0 when the graph
 * computes it (a size the export script took from a traced tensor, say).
 * Outside a trace every input is constant: 1.  Returns a negative code as
 * trw_trace_set_input does when the node or the input cannot be found.
 */
TRW_API int trw_trace_input_is_constant(trw_ctx *ctx, trw_value *output,
                                        size_t index);

#ifdef __cplusplus
}
#endif

#endif /* TORCHRW_H */
