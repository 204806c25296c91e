/* test_core.c - Check unit tests of torchrw's core (registry, selection,
 * names, config, context, errors).  Run in CK_FORK mode. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

static int dummy_fn(trw_ctx *ctx, size_t n, trw_value *const a[], trw_value **r)
{
  (void)ctx; (void)n; (void)a; (void)r;
  return 0;
}
static int other_fn(trw_ctx *ctx, size_t n, trw_value *const a[], trw_value **r)
{
  (void)ctx; (void)n; (void)a; (void)r;
  return 1;
}
static int always_no(const trw_env *env) { (void)env; return 0; }
static int needs_opset13(const trw_env *env) { return trw_env_opset(env) >= 13; }

static trw_rewriter_def def_of(const char *name, const char *backend, trw_ir ir,
                               void *fn, int line)
{
  trw_rewriter_def d = {.size = sizeof d, .api_version = TRW_API_VERSION,
                        .kind = TRW_KIND_FUNCTION, .name = name, .backend = backend,
                        .ir = ir, .fn = fn, .file = "test.c", .line = line};
  return d;
}

static trw_env env_of(const char *backend, trw_ir ir, int opset)
{
  trw_env e = {backend, ir, opset, TRW_EXPORTER_TORCHSCRIPT, 1, 13, NULL, NULL};
  return e;
}

static void setup(void)
{
  trw__registry_reset();
  trw__log_set_level(TRW__LOG_ERROR);
}

START_TEST(errors_have_names)
{
  ck_assert_str_eq(trw_err_name(TRW_EBACKEND), "TRW_EBACKEND");
  ck_assert_str_eq(trw_strerror(TRW_EBACKEND), "unknown backend");
  ck_assert_str_eq(trw_err_name(0), "TRW_OK");
  ck_assert_str_eq(trw_strerror(12345), "unknown error");
  ck_assert_int_lt(TRW_EINVAL, 0);
}
END_TEST

START_TEST(names_map_to_operators)
{
  char op[64];
  ck_assert_int_eq(trw__name_to_op("torch.Tensor.repeat", op, sizeof op), 0);
  ck_assert_str_eq(op, "aten::repeat");
  ck_assert_int_eq(trw__name_to_op("torch.topk", op, sizeof op), 0);
  ck_assert_str_eq(op, "aten::topk");
  ck_assert_int_eq(trw__name_to_op("aten::squeeze.dim", op, sizeof op), 0);
  ck_assert_str_eq(op, "aten::squeeze.dim");
  ck_assert_int_eq(trw__name_to_op("torch.nn.functional.interpolate", op, sizeof op), 1);
  ck_assert_int_eq(trw__name_to_op("pkg.models.decode", op, sizeof op), 1);
  ck_assert_int_eq(trw__name_to_op("torch.Tensor.__mod__", op, sizeof op), 1);
  ck_assert_int_eq(trw__name_to_op("aten::", op, sizeof op), TRW_ENAME);
  ck_assert_int_eq(trw__name_to_op("aten::bad name", op, sizeof op), TRW_ENAME);
  ck_assert_int_eq(trw__name_to_op("torch..x", op, sizeof op), TRW_ENAME);
  ck_assert_int_eq(trw__name_to_op("", op, sizeof op), TRW_ENAME);
}
END_TEST

START_TEST(registration_validates)
{
  trw_rewriter_def d = def_of("torch.Tensor.repeat", "tensorrtt", TRW_IR_ANY, dummy_fn, 1);
  char err[512] = "";
  ck_assert_int_eq(trw__register(&d, TRW__LANG_C, 0, NULL, NULL, 0, err, sizeof err), TRW_EBACKEND);
  ck_assert_ptr_nonnull(strstr(err, "tensorrtt"));
  ck_assert_ptr_nonnull(strstr(err, "onnxruntime")); /* lists the known ones */
  ck_assert_ptr_nonnull(strstr(err, "test.c:1"));
  d = def_of("has space", NULL, TRW_IR_ANY, dummy_fn, 2);
  ck_assert_int_eq(trw_register(&d), TRW_ENAME);
  d = def_of("pkg.python.function", NULL, TRW_IR_ANY, dummy_fn, 3);
  ck_assert_int_eq(trw_register(&d), TRW_ENAME); /* C needs an operator */
  d = def_of("torch.topk", NULL, TRW_IR_ANY, NULL, 4);
  ck_assert_int_eq(trw_register(&d), TRW_EINVAL);
  ck_assert_int_eq(trw_register(NULL), TRW_EINVAL);
  ck_assert_uint_eq(trw__registry_error_count(), 5);
  ck_assert_uint_eq(trw__registry_count(), 0);
}
END_TEST

START_TEST(registration_of_another_api_version_is_refused_unread)
{
  trw_rewriter_def d = def_of("torch.topk", NULL, TRW_IR_ANY, dummy_fn, 1);
  char err[512] = "";
  d.api_version = TRW_API_VERSION + 1;
  ck_assert_int_eq(trw__register(&d, TRW__LANG_C, 0, NULL, NULL, 0, err, sizeof err),
                   TRW_EVERSION);
  char want[128];
  snprintf(want, sizeof want, "built for torchrw API version %d", TRW_API_VERSION + 1);
  ck_assert_ptr_nonnull(strstr(err, want));
  snprintf(want, sizeof want, "speaks API version %d", TRW_API_VERSION);
  ck_assert_ptr_nonnull(strstr(err, want));
  /* A header before version 2 began with the kind: a size of 0 to 2. */
  d = def_of("torch.topk", NULL, TRW_IR_ANY, dummy_fn, 2);
  d.size = TRW_KIND_SYMBOLIC;
  ck_assert_int_eq(trw__register(&d, TRW__LANG_C, 0, NULL, NULL, 0, err, sizeof err),
                   TRW_EVERSION);
  ck_assert_ptr_nonnull(strstr(err, "older than API version 2"));
  ck_assert_uint_eq(trw__registry_count(), 0);
}
END_TEST

static int freed[4];
static void free_counter(void *p) { (*(int *)p)++; }

START_TEST(user_data_reaches_the_rewriter_and_is_freed_once)
{
  trw_rewriter_def a = def_of("torch.topk", "tensorrt", TRW_IR_ANY, dummy_fn, 1);
  a.user_data = &freed[0];
  a.free_user_data = free_counter;
  ck_assert_int_eq(trw_register(&a), 0);
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 11);
  trw__rewriter *r = trw__select(TRW_KIND_FUNCTION, "torch.topk", &e);
  trw_ctx ctx = {0};
  ctx.rw = r;
  ck_assert_ptr_eq(trw_ctx_user_data(&ctx), &freed[0]);
  ck_assert_int_eq(freed[0], 0);
  /* Replaced: freed once. */
  trw_rewriter_def b = def_of("torch.topk", "tensorrt", TRW_IR_ANY, other_fn, 2);
  b.user_data = &freed[1];
  b.free_user_data = free_counter;
  ck_assert_int_eq(trw_register(&b), 0);
  ck_assert_int_eq(freed[0], 1);
  /* Refused: freed at once. */
  trw_rewriter_def c = def_of("torch.topk", "tensorrrt", TRW_IR_ANY, other_fn, 3);
  c.user_data = &freed[2];
  c.free_user_data = free_counter;
  ck_assert_int_eq(trw_register(&c), TRW_EBACKEND);
  ck_assert_int_eq(freed[2], 1);
  /* Unloaded (the registry reset): freed. */
  trw__registry_reset();
  ck_assert_int_eq(freed[1], 1);
  ck_assert_int_eq(freed[0], 1);
}
END_TEST

START_TEST(later_registration_wins)
{
  trw_rewriter_def a = def_of("torch.topk", "tensorrt", TRW_IR_ANY, dummy_fn, 10);
  trw_rewriter_def b = def_of("torch.topk", "tensorrt", TRW_IR_ANY, other_fn, 20);
  ck_assert_int_eq(trw_register(&a), 0);
  ck_assert_int_eq(trw_register(&b), 0);
  ck_assert_uint_eq(trw__registry_count(), 1);
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 11);
  trw__rewriter *r = trw__select(TRW_KIND_FUNCTION, "torch.topk", &e);
  ck_assert_ptr_nonnull(r);
  ck_assert_int_eq(r->line, 20);
  ck_assert_str_eq(r->stable, "torch.topk@tensorrt");
  ck_assert_str_eq(r->op, "aten::topk");
}
END_TEST

START_TEST(selection_prefers_backend_then_default)
{
  trw_rewriter_def dflt = def_of("torch.topk", NULL, TRW_IR_ANY, dummy_fn, 1);
  trw_rewriter_def trt = def_of("torch.topk", "tensorrt", TRW_IR_ANY, other_fn, 2);
  ck_assert_int_eq(trw_register(&dflt), 0);
  ck_assert_int_eq(trw_register(&trt), 0);
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 11);
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.topk", &e)->line, 2);
  e = env_of("onnxruntime", TRW_IR_ONNX, 11);
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.topk", &e)->line, 1);
  ck_assert_ptr_null(trw__select(TRW_KIND_FUNCTION, "torch.other", &e));
  ck_assert_ptr_null(trw__select(TRW_KIND_SYMBOLIC, "torch.topk", &e));
}
END_TEST

START_TEST(plan_holds_the_winners_until_the_registry_changes)
{
  trw_rewriter_def dflt = def_of("torch.topk", NULL, TRW_IR_ANY, dummy_fn, 1);
  trw_rewriter_def trt = def_of("torch.topk", "tensorrt", TRW_IR_ANY, other_fn, 2);
  trw_rewriter_def roll = def_of("torch.roll", NULL, TRW_IR_ANY, dummy_fn, 3);
  ck_assert_int_eq(trw_register(&dflt), 0);
  ck_assert_int_eq(trw_register(&trt), 0);
  ck_assert_int_eq(trw_register(&roll), 0);
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 11);
  size_t n;
  trw__rewriter *const *w = trw__plan_winners(&e, TRW_KIND_FUNCTION, &n);
  /* One per name, as trw__select picks, in registration order. */
  ck_assert_uint_eq(n, 2);
  ck_assert_int_eq(w[0]->line, 2);
  ck_assert_int_eq(w[1]->line, 3);
  ck_assert_ptr_eq(trw__plan_winners(&e, TRW_KIND_FUNCTION, &n), w); /* kept */
  ck_assert(trw__plan_selects(&e, w[0]));
  trw_env o = env_of("onnxruntime", TRW_IR_ONNX, 11);
  w = trw__plan_winners(&o, TRW_KIND_FUNCTION, &n);
  ck_assert_uint_eq(n, 2);
  ck_assert_int_eq(w[0]->line, 1);
  ck_assert_ptr_nonnull(trw__plan_winners(&o, TRW_KIND_SYMBOLIC, &n));
  ck_assert_uint_eq(n, 0);
  /* A registration makes the plans stale. */
  trw_rewriter_def sym = def_of("squeeze", NULL, TRW_IR_ANY, dummy_fn, 4);
  sym.kind = TRW_KIND_SYMBOLIC;
  ck_assert_int_eq(trw_register(&sym), 0);
  w = trw__plan_winners(&o, TRW_KIND_SYMBOLIC, &n);
  ck_assert_uint_eq(n, 1);
  ck_assert_int_eq(w[0]->line, 4);
  /* So does TORCHRW_DISABLE. */
  trw__registry_disable("torch.topk@tensorrt");
  w = trw__plan_winners(&e, TRW_KIND_FUNCTION, &n);
  ck_assert_uint_eq(n, 2);
  ck_assert_int_eq(w[0]->line, 1);
  trw__plan_reset();
}
END_TEST

START_TEST(selection_filters_ir_and_checkers)
{
  trw_rewriter_def onnx = def_of("torch.topk", "tensorrt", TRW_IR_ONNX, dummy_fn, 1);
  trw_rewriter_def never = def_of("torch.roll", "tensorrt", TRW_IR_ANY, dummy_fn, 2);
  never.checkers[0] = always_no;
  trw_rewriter_def new_opset = def_of("torch.roll", NULL, TRW_IR_ANY, dummy_fn, 3);
  new_opset.checkers[0] = needs_opset13;
  ck_assert_int_eq(trw_register(&onnx), 0);
  ck_assert_int_eq(trw_register(&never), 0);
  ck_assert_int_eq(trw_register(&new_opset), 0);
  trw_env e = env_of("tensorrt", TRW_IR_TORCHSCRIPT, 0);
  ck_assert_ptr_null(trw__select(TRW_KIND_FUNCTION, "torch.topk", &e));
  e.ir = TRW_IR_ONNX;
  ck_assert_ptr_nonnull(trw__select(TRW_KIND_FUNCTION, "torch.topk", &e));
  /* The tensorrt one fails its checker; the default needs opset 13. */
  e.opset = 11;
  ck_assert_ptr_null(trw__select(TRW_KIND_FUNCTION, "torch.roll", &e));
  e.opset = 13;
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.roll", &e)->line, 3);
}
END_TEST

START_TEST(ir_specific_beats_any)
{
  trw_rewriter_def any = def_of("torch.topk", "tensorrt", TRW_IR_ANY, dummy_fn, 1);
  trw_rewriter_def onnx = def_of("torch.topk", "tensorrt", TRW_IR_ONNX, dummy_fn, 2);
  ck_assert_int_eq(trw_register(&onnx), 0);
  ck_assert_int_eq(trw_register(&any), 0);
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 11);
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.topk", &e)->line, 2);
  e.ir = TRW_IR_TORCHSCRIPT;
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.topk", &e)->line, 1);
}
END_TEST

START_TEST(checkers_are_part_of_the_key)
{
  trw_rewriter_def plain = def_of("torch.layer_norm", NULL, TRW_IR_ANY, dummy_fn, 1);
  trw_rewriter_def new_opset = def_of("torch.layer_norm", NULL, TRW_IR_ANY, dummy_fn, 2);
  new_opset.checkers[0] = needs_opset13;
  trw_rewriter_def again = def_of("torch.layer_norm", NULL, TRW_IR_ANY, other_fn, 3);
  again.checkers[0] = needs_opset13;
  ck_assert_int_eq(trw_register(&new_opset), 0);
  ck_assert_int_eq(trw_register(&plain), 0);
  ck_assert_uint_eq(trw__registry_count(), 2); /* other checkers: another key */
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 11);
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.layer_norm", &e)->line, 1);
  e.opset = 13; /* both apply: the one with checkers is more specific */
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.layer_norm", &e)->line, 2);
  ck_assert_int_eq(trw_register(&again), 0); /* same checkers: replaces line 2 */
  ck_assert_uint_eq(trw__registry_count(), 2);
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.layer_norm", &e)->line, 3);
}
END_TEST

START_TEST(disable_by_stable_or_bare_name)
{
  trw_rewriter_def dflt = def_of("torch.topk", NULL, TRW_IR_ANY, dummy_fn, 1);
  trw_rewriter_def trt = def_of("torch.topk", "tensorrt", TRW_IR_ANY, dummy_fn, 2);
  trw_rewriter_def rep = def_of("torch.Tensor.repeat", "tensorrt", TRW_IR_ANY, dummy_fn, 3);
  ck_assert_int_eq(trw_register(&dflt), 0);
  ck_assert_int_eq(trw_register(&trt), 0);
  trw__registry_disable("torch.topk@tensorrt, torch.Tensor.repeat");
  /* Registered after the list was read: still switched off. */
  ck_assert_int_eq(trw_register(&rep), 0);
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 11);
  ck_assert_int_eq(trw__select(TRW_KIND_FUNCTION, "torch.topk", &e)->line, 1);
  ck_assert_ptr_null(trw__select(TRW_KIND_FUNCTION, "torch.Tensor.repeat", &e));
}
END_TEST

START_TEST(registration_refused_while_active)
{
  trw__registry_set_active(1);
  trw_rewriter_def d = def_of("torch.topk", NULL, TRW_IR_ANY, dummy_fn, 1);
  ck_assert_int_eq(trw_register(&d), TRW_EPHASE);
  trw__registry_set_active(0);
  ck_assert_int_eq(trw_register(&d), 0);
}
END_TEST

START_TEST(config_dotted_paths)
{
  const char *json = "{\"onnx_config\": {\"opset_version\": 13, \"input_names\": [\"input\"],"
                     " \"keep\": true, \"scale\": 0.5},"
                     " \"backend_config\": {\"type\": \"tensorrt\"}}";
  trw_cfg *cfg = NULL;
  char err[256];
  ck_assert_int_eq(trw__cfg_parse(json, strlen(json), "deploy.json", &cfg, err, sizeof err), 0);
  ck_assert_int_eq(trw_cfg_get_int(cfg, "onnx_config.opset_version", 11), 13);
  ck_assert_int_eq(trw_cfg_get_int(cfg, "onnx_config.missing", 11), 11);
  ck_assert_int_eq(trw_cfg_get_int(cfg, "backend_config.type", 7), 7); /* wrong type */
  ck_assert_str_eq(trw_cfg_get_string(cfg, "backend_config.type", ""), "tensorrt");
  ck_assert_str_eq(trw_cfg_get_string(cfg, "onnx_config.input_names.0", ""), "input");
  ck_assert_str_eq(trw_cfg_get_string(cfg, "onnx_config.input_names.1", "none"), "none");
  ck_assert_int_eq(trw_cfg_get_bool(cfg, "onnx_config.keep", 0), 1);
  ck_assert(trw_cfg_get_double(cfg, "onnx_config.scale", 0) == 0.5);
  ck_assert(trw_cfg_get_double(cfg, "onnx_config.opset_version", 0) == 13.0);
  ck_assert(trw_cfg_has(cfg, "onnx_config"));
  ck_assert(!trw_cfg_has(cfg, "onnx_config..x"));
  ck_assert_int_eq(trw_cfg_get_int(NULL, "a.b", 5), 5);
  trw__cfg_free(cfg);
}
END_TEST

/* Found by fuzz_config: an empty path gave the whole config and a trailing
 * dot was ignored, and a key of 256 bytes or more was never found. */
START_TEST(config_paths_with_empty_segments_name_nothing)
{
  char json[700], key[301], path[400];
  memset(key, 'k', 300);
  key[300] = '\0';
  snprintf(json, sizeof json, "{\"a\": {\"b\": [1, 2]}, \"%s\": {\"x\": 4}}", key);
  trw_cfg *cfg = NULL;
  char err[256];
  ck_assert_int_eq(trw__cfg_parse(json, strlen(json), "deploy.json", &cfg, err, sizeof err), 0);
  ck_assert(!trw_cfg_has(cfg, ""));
  ck_assert(!trw_cfg_has(cfg, "a."));
  ck_assert(!trw_cfg_has(cfg, "a.b.1."));
  ck_assert(!trw_cfg_has(cfg, ".a"));
  ck_assert_int_eq(trw_cfg_get_int(cfg, "a.b.1", 0), 2);
  ck_assert_int_eq(trw_cfg_get_int(cfg, "a.b.01", 0), 2);
  ck_assert(!trw_cfg_has(cfg, "a.b.+1"));
  ck_assert(!trw_cfg_has(cfg, "a.b.18446744073709551617"));
  snprintf(path, sizeof path, "%s.x", key);
  ck_assert_int_eq(trw_cfg_get_int(cfg, path, 0), 4);
  trw__cfg_free(cfg);
}
END_TEST

START_TEST(config_errors_name_file_and_position)
{
  const char *bad = "{\n  \"onnx_config\": {\"opset_version\": 13,}\n}";
  trw_cfg *cfg = NULL;
  char err[256];
  ck_assert_int_eq(trw__cfg_parse(bad, strlen(bad), "deploy.json", &cfg, err, sizeof err),
                   TRW_ECONFIG);
  ck_assert_ptr_null(cfg);
  ck_assert_msg(strncmp(err, "deploy.json:2:", 14) == 0, "got %s", err);
  ck_assert_int_eq(trw__cfg_parse("[1]", 3, "list.json", &cfg, err, sizeof err), TRW_ECONFIG);
  ck_assert_ptr_nonnull(strstr(err, "must be a JSON object"));
  ck_assert_int_eq(trw__cfg_load("/nonexistent/deploy.json", &cfg, err, sizeof err), TRW_EIO);
  ck_assert_ptr_nonnull(strstr(err, "/nonexistent/deploy.json"));
}
END_TEST

START_TEST(config_load_from_file)
{
  char path[] = "/tmp/trw_cfg_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  const char *json = "{\"codebase_config\": {\"post_processing\": {\"max_output_boxes_per_class\": 200}}}";
  ck_assert_int_eq(write(fd, json, strlen(json)), (int)strlen(json));
  close(fd);
  trw_cfg *cfg = NULL;
  char err[256];
  ck_assert_int_eq(trw__cfg_load(path, &cfg, err, sizeof err), 0);
  ck_assert_int_eq(trw_cfg_get_int(cfg, "codebase_config.post_processing.max_output_boxes_per_class", 0), 200);
  trw__cfg_free(cfg);
  unlink(path);
}
END_TEST

/* A FIFO, a directory or a device as the config: one error naming it,
 * and never a read that blocks (CK_FORK's timeout catches one). */
START_TEST(config_refuses_what_is_not_a_regular_file)
{
  char dir[] = "/tmp/trw_cfgdir_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char fifo[sizeof dir + 16];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  const struct {
    const char *path, *says;
  } cases[] = {{fifo, "is a FIFO"}, {dir, "is a directory"}, {"/dev/null", "is a device"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    trw_cfg *cfg = NULL;
    char err[512] = "";
    ck_assert_int_eq(trw__cfg_load(cases[i].path, &cfg, err, sizeof err), TRW_EIO);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(err, cases[i].path) && strstr(err, cases[i].says), "%s", err);
  }
  unlink(fifo);
  rmdir(dir);
}
END_TEST

static trw_env report_env(void)
{
  static trw_env e;
  e = env_of("tensorrt", TRW_IR_ONNX, 11);
  return e;
}

/* Without TORCHRW_REPORT the report holds nothing from one trace to the
 * next: its memory is only spent when it is asked for. */
START_TEST(report_costs_no_memory_unless_asked)
{
  unsetenv("TORCHRW_REPORT");
  trw_env e = report_env();
  for (int i = 0; i < 10; i++) {
    trw__report_begin(&e);
    trw__report_not_found("some.missing.name@tensorrt", "no module named some");
    trw__report_flush();
  }
  size_t before = mallinfo2().uordblks;
  for (int i = 0; i < 2000; i++) {
    trw__report_begin(&e);
    trw__report_not_found("some.missing.name@tensorrt", "no module named some");
    trw__report_flush();
  }
  size_t after = mallinfo2().uordblks;
  ck_assert_msg(after < before + 4096, "grew by %zu bytes over 2000 traces", after - before);
}
END_TEST

/* With it, each trace appends one line (JSON Lines) and leaves what is
 * already in the file as it is. */
START_TEST(report_appends_one_record_per_trace)
{
  char path[] = "/tmp/trw_report_XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  close(fd);
  setenv("TORCHRW_REPORT", path, 1);
  trw_env e = report_env();
  trw__report_begin(&e);
  trw__report_flush();
  FILE *f = fopen(path, "a");
  fputs("{\"someone\": \"else\"}\n", f);
  fclose(f);
  trw__report_begin(&e);
  trw__report_not_found("x.y@tensorrt", "gone");
  trw__report_flush();
  char buf[4096] = "";
  f = fopen(path, "r");
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *second = strstr(buf, "{\"someone\": \"else\"}\n");
  ck_assert_msg(second && second > buf, "%s", buf);
  int lines = 0;
  for (size_t i = 0; i < n; i++)
    lines += buf[i] == '\n';
  ck_assert_int_eq(lines, 3);
  ck_assert_ptr_nonnull(strstr(second, "\"x.y@tensorrt\": \"gone\""));
  ck_assert_ptr_nonnull(strstr(buf, "\"backend\": \"tensorrt\""));
  ck_assert_int_eq(buf[n - 1], '\n');
  trw__report_reset();
  unlink(path);
}
END_TEST

START_TEST(context_error_names_rewriter_and_site)
{
  trw_rewriter_def d = def_of("torch.topk", "tensorrt", TRW_IR_ANY, dummy_fn, 42);
  ck_assert_int_eq(trw_register(&d), 0);
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 11);
  trw_ctx ctx = {0};
  ctx.rw = trw__select(TRW_KIND_FUNCTION, "torch.topk", &e);
  ctx.env = &e;
  ctx.op = "aten::topk";
  ck_assert_int_eq(trw_error(&ctx, TRW_EINVAL, "k must be %d or less", 3840), TRW_EINVAL);
  char msg[512];
  trw__ctx_failure(&ctx, TRW_EINVAL, msg, sizeof msg);
  ck_assert_str_eq(msg, "torchrw: rewriter torch.topk@tensorrt (test.c:42) failed on "
                        "aten::topk: k must be 3840 or less");
  ck_assert_str_eq(trw_ctx_backend(&ctx), "tensorrt");
  ck_assert_int_eq(trw_ctx_opset(&ctx), 11);
  ck_assert_int_eq(trw_ctx_ir(&ctx), TRW_IR_ONNX);
}
END_TEST

START_TEST(backends_canonical)
{
  ck_assert_str_eq(trw__backend_canonical(NULL), "default");
  ck_assert_str_eq(trw__backend_canonical("ncnn"), "ncnn");
  ck_assert_ptr_null(trw__backend_canonical("TensorRT"));
  ck_assert_int_lt(trw__backend_index("tensorrtx"), 0);
}
END_TEST

START_TEST(backend_specs_parse)
{
  const trw__backend *b = NULL;
  const char *v = NULL;
  char err[512];
  ck_assert_int_eq(trw__backend_parse("tensorrt", &b, &v, err, sizeof err), 0);
  ck_assert_str_eq(b->name, "tensorrt");
  ck_assert_str_eq(v, "10.15"); /* a bare name: the newest table */
  ck_assert_int_eq(trw__backend_parse("tensorrt:8.5", &b, &v, err, sizeof err), 0);
  ck_assert_str_eq(v, "8.5");
  ck_assert_int_eq(trw__backend_parse(NULL, &b, &v, err, sizeof err), 0);
  ck_assert_str_eq(b->name, "default");
  ck_assert_ptr_null(v);
  ck_assert_int_eq(trw__backend_parse("onnxruntime", &b, &v, err, sizeof err), 0);
  ck_assert_str_eq(v, "1.32.0");

  /* Each bad spec: one message naming the spec and the known versions. */
  static const char *const bad[] = {"tensorrt:", "tensorrt:x", "tensorrt:9.0", "tensorrt:8.",
                                    "tensorrt:.5", "tensorrt:8..5", "tensorrt:8.5:1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    ck_assert_int_eq(trw__backend_parse(bad[i], &b, &v, err, sizeof err), TRW_EBACKEND);
    ck_assert_msg(strstr(err, bad[i]) && strstr(err, "8.5, 8.6, 10.15"), "%s: %s", bad[i], err);
  }
  ck_assert_int_eq(trw__backend_parse("tensorrtx:8.5", &b, &v, err, sizeof err), TRW_EBACKEND);
  ck_assert_ptr_nonnull(strstr(err, "not a known backend"));
  ck_assert_int_eq(trw__backend_parse("default:1", &b, &v, err, sizeof err), TRW_EBACKEND);
  ck_assert_ptr_nonnull(strstr(err, "no versions"));
}
END_TEST

START_TEST(version_constraints_match)
{
  ck_assert(trw__version_cmp("8.6", "10.15") < 0);
  ck_assert(trw__version_cmp("10.15", "10.15") == 0);
  ck_assert(trw__version_cmp("2026.4.1", "2026.4") > 0);
  ck_assert(trw__version_matches(NULL, "8.5"));
  ck_assert(trw__version_matches("<8.6", "8.5"));
  ck_assert(!trw__version_matches("<8.6", "8.6"));
  ck_assert(trw__version_matches("<=8.6", "8.6"));
  ck_assert(trw__version_matches(">=8.6,<10", "8.6"));
  ck_assert(!trw__version_matches(">=8.6,<10", "10.15"));
  ck_assert(trw__version_matches("10", "10.15"));   /* the versions under 10 */
  ck_assert(!trw__version_matches("1", "10.15"));   /* not a string prefix */
  ck_assert(trw__version_matches("==8.5", "8.5"));
  ck_assert(!trw__version_matches("<8.6", ""));     /* a backend without versions */

  const trw__backend *b;
  const char *c;
  char err[512];
  ck_assert_int_eq(trw__backend_parse_registration("tensorrt:<8.6", &b, &c, err, sizeof err), 0);
  ck_assert_str_eq(c, "<8.6");
  ck_assert_int_eq(trw__backend_parse_registration("tensorrt", &b, &c, err, sizeof err), 0);
  ck_assert_ptr_null(c);
  static const char *const bad[] = {"tensorrt:", "tensorrt:<", "tensorrt:=<8", "tensorrt:8,",
                                    "tensorrt:~8", "default:<8"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ck_assert_msg(trw__backend_parse_registration(bad[i], &b, &c, err, sizeof err) ==
                      TRW_EBACKEND && strstr(err, bad[i]),
                  "%s: %s", bad[i], err);
}
END_TEST

START_TEST(versioned_rewriters_select_by_version)
{
  trw_rewriter_def all = def_of("torch.layer_norm", "tensorrt", TRW_IR_ANY, (void *)dummy_fn, 1);
  trw_rewriter_def old = def_of("torch.layer_norm", "tensorrt:<8.6", TRW_IR_ANY, (void *)other_fn, 2);
  ck_assert_int_eq(trw_register(&all), 0);
  ck_assert_int_eq(trw_register(&old), 0); /* another key: both stay */
  ck_assert_int_eq(trw__registry_count(), 2);
  trw_env e = env_of("tensorrt", TRW_IR_ONNX, 18);
  e.version = "8.5";
  trw__rewriter *r = trw__select(TRW_KIND_FUNCTION, "torch.layer_norm", &e);
  ck_assert_ptr_nonnull(r);
  ck_assert_str_eq(r->stable, "torch.layer_norm@tensorrt:<8.6");
  e.version = "8.6";
  ck_assert_str_eq(trw__select(TRW_KIND_FUNCTION, "torch.layer_norm", &e)->stable,
                   "torch.layer_norm@tensorrt");
  e.version = NULL; /* a bare name: the newest, 10.15 */
  ck_assert_str_eq(trw__select(TRW_KIND_FUNCTION, "torch.layer_norm", &e)->stable,
                   "torch.layer_norm@tensorrt");
  ck_assert_str_eq(trw_env_backend_version(&e), "10.15");
  trw_rewriter_def bad = def_of("torch.layer_norm", "tensorrt:x", TRW_IR_ANY, (void *)dummy_fn, 3);
  ck_assert_int_eq(trw_register(&bad), TRW_EBACKEND);
}
END_TEST

static Suite *core_suite(void)
{
  Suite *s = suite_create("core");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, NULL);
  tcase_add_test(tc, errors_have_names);
  tcase_add_test(tc, backend_specs_parse);
  tcase_add_test(tc, version_constraints_match);
  tcase_add_test(tc, versioned_rewriters_select_by_version);
  tcase_add_test(tc, names_map_to_operators);
  tcase_add_test(tc, registration_validates);
  tcase_add_test(tc, registration_of_another_api_version_is_refused_unread);
  tcase_add_test(tc, user_data_reaches_the_rewriter_and_is_freed_once);
  tcase_add_test(tc, later_registration_wins);
  tcase_add_test(tc, selection_prefers_backend_then_default);
  tcase_add_test(tc, plan_holds_the_winners_until_the_registry_changes);
  tcase_add_test(tc, selection_filters_ir_and_checkers);
  tcase_add_test(tc, ir_specific_beats_any);
  tcase_add_test(tc, checkers_are_part_of_the_key);
  tcase_add_test(tc, disable_by_stable_or_bare_name);
  tcase_add_test(tc, registration_refused_while_active);
  tcase_add_test(tc, config_dotted_paths);
  tcase_add_test(tc, config_paths_with_empty_segments_name_nothing);
  tcase_add_test(tc, config_errors_name_file_and_position);
  tcase_add_test(tc, config_load_from_file);
  tcase_add_test(tc, config_refuses_what_is_not_a_regular_file);
  tcase_add_test(tc, report_costs_no_memory_unless_asked);
  tcase_add_test(tc, report_appends_one_record_per_trace);
  tcase_add_test(tc, context_error_names_rewriter_and_site);
  tcase_add_test(tc, backends_canonical);
  suite_add_tcase(s, tc);
  return s;
}

int main(void)
{
  SRunner *sr = srunner_create(core_suite());
  srunner_set_fork_status(sr, CK_FORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
