/*
 * cmd_check.c - "torchrw check MODEL.onnx --backend B [--json]": what in
 * an exported file the backend cannot run, judged by the backend's
 * capability table in data/backends/B.json.
 */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "check_explain.h"
#include "cmd.h"
#include "json_out.h"

static void help(void)
{
  printf("usage: torchrw check MODEL.onnx --backend B[:VERSION] [--json] [--no-fixes]\n"
         "       torchrw check --list [--json]\n"
         "\n"
         "Compares the graph with the capability table of backend B "
         "(data/backends/B.json:\ntensorrt, onnxruntime, ncnn, openvino) "
         "and prints one line per violation:\n"
         "\n"
         "    node_name: OpType: rule (source)\n"
         "        at FILE:LINE (FUNCTION): CODE\n"
         "        fixed by: REWRITER (SITE)\n"
         "\n"
         "FILE:LINE is the innermost line outside torch of the Python that made the\n"
         "node, as the exporter recorded it (torch.export: the node's metadata;\n"
         "TorchScript: its doc string, kept with verbose=True or under torchrw with\n"
         "TORCHRW_SOURCE_LINES=1); where none is recorded, the line says so.\n"
         "REWRITER is each rewriter for B (built-in, TORCHRW_PLUGINS, TORCHRW_PYTHON)\n"
         "whose TRW_FIXES declaration covers the violation, read from the registry\n"
         "by $PYTHON (as torchrw list does) when there is a violation.\n"
         "\n"
         "Rules: operators the backend lacks, operators supported only in "
         "an opset range,\nattribute values, inputs that must be constant "
         "and bounded, dtypes refused\n(always or with dynamic shapes), "
         "static input shapes, opset range, custom\ndomains.  Each rule "
         "cites where the fact comes from.  External weights are\nnever "
         "read.\n"
         "\n"
         "  --backend B   the backend to check for (required): a name, the newest\n"
         "                table of it (tensorrt: TensorRT 10.15), or name:version\n"
         "                (tensorrt:8.5, tensorrt:8.6, tensorrt:10.15)\n"
         "  --list        list the tables, their versions and files\n"
         "  --json        print the violations as JSON (with where, where_note,\n"
         "                fixed_by)\n"
         "  --no-fixes    do not ask the registry which rewriters fix them\n"
         "  --help        show this help\n"
         "\n"
         "Tables are looked up in $TORCHRW_DATA/backends, else "
         "share/torchrw/backends\nbeside the executable, else the source "
         "tree's data/backends.\n"
         "\n"
         "A backend torchrw rewrites for but has no table of (default, "
         "torchscript, rknn,\n...) is refused with exit status 2: nothing is "
         "checked, nothing passes.\n"
         "\n"
         "Exit status: 0 no violation, 1 violations, 2 bad usage or bad "
         "input.\n");
}

struct collect {
  json_t *list; /* NULL for text output */
  int ok;
};

static int on_violation(const char *node, const char *what, const char *rule,
                        const char *source, void *user)
{
  struct collect *col = user;

  trw__json_append(col->list,
                   json_pack("{s:o, s:o, s:o, s:o}", "node",
                             trw__json_str(node), "op", trw__json_str(what),
                             "rule", trw__json_str(rule), "source",
                             trw__json_str(source)),
                   &col->ok);
  return col->ok ? 0 : 1;
}

static const char *str(const json_t *obj, const char *key)
{
  const char *s = json_string_value(json_object_get(obj, key));
  return s != NULL ? s : "";
}

static void print_text(const json_t *list, const char *backend)
{
  size_t i, k;
  json_t *v, *f;

  json_array_foreach(list, i, v) {
    const json_t *where = json_object_get(v, "where");
    const json_t *fixes = json_object_get(v, "fixed_by");
    printf("%s: %s: %s (%s)\n", str(v, "node"), str(v, "op"), str(v, "rule"),
           str(v, "source"));
    if (json_is_object(where))
      printf("    at %s:%lld%s%s%s%s%s\n", str(where, "file"),
             (long long)json_integer_value(json_object_get(where, "line")),
             str(where, "function")[0] ? " (" : "", str(where, "function"),
             str(where, "function")[0] ? ")" : "", str(where, "code")[0] ? ": " : "",
             str(where, "code"));
    else if (str(v, "where_note")[0])
      printf("    at: %s\n", str(v, "where_note"));
    if (str(v, "fixed_by_note")[0])
      printf("    fixed by: not known: %s\n", str(v, "fixed_by_note"));
    else if (json_is_array(fixes) && json_array_size(fixes) == 0)
      printf("    fixed by: no rewriter for %s declares it removes this\n", backend);
    json_array_foreach(fixes, k, f)
      printf("    fixed by: %s (%s:%lld)%s\n", str(f, "stable"), str(f, "file"),
             (long long)json_integer_value(json_object_get(f, "line")),
             json_is_true(json_object_get(f, "disabled")) ? ", disabled by TORCHRW_DISABLE"
                                                          : "");
  }
}

int trw__cmd_check(int argc, char **argv)
{
  const char *pos[1], *backend = NULL;
  int help_flag, npos, json = 0, no_fixes = 0, rc, n;
  int list = 0;
  const trw__opt opts[] = {{"--backend", 1, &backend, NULL},
                           {"--json", 0, NULL, &json},
                           {"--list", 0, NULL, &list},
                           {"--no-fixes", 0, NULL, &no_fixes},
                           {NULL, 0, NULL, NULL}};
  struct collect col = {NULL, 1};
  trw__onnx_model *model;
  json_t *table;
  char err[1024];

  rc = trw__cmd_parse("check", argc, argv, opts, &help_flag, pos, 1, &npos);
  if (rc != 0)
    return rc;
  if (help_flag) {
    help();
    return TRW__EXIT_OK;
  }
  if (list && npos == 0 && backend == NULL) {
    rc = trw__check_list_tables(stdout, json);
    return rc == 0 ? TRW__EXIT_OK : TRW__EXIT_BAD;
  }
  if (npos != 1 || backend == NULL) {
    fprintf(stderr, "torchrw check: expected MODEL.onnx and --backend B "
                    "(see torchrw check --help)\n");
    return TRW__EXIT_BAD;
  }
  table = trw__check_load_table(backend, err, sizeof(err));
  if (table == NULL) {
    fprintf(stderr, "torchrw check: %s\n", err);
    return TRW__EXIT_BAD;
  }
  rc = trw__cmd_load(pos[0], &model, NULL, NULL);
  if (rc != 0) {
    json_decref(table);
    return rc;
  }
  if ((col.list = json_array()) == NULL) {
    trw__cmd_error(pos[0], "out of memory");
    rc = TRW__EXIT_BAD;
    goto done;
  }
  n = trw__check_model(model, table, on_violation, &col, err, sizeof(err));
  if (n < 0 || !col.ok) {
    trw__cmd_error(pos[0], "%s", n < 0 ? err : "out of memory");
    rc = TRW__EXIT_BAD;
    goto done;
  }
  rc = n > 0 ? TRW__EXIT_FOUND : TRW__EXIT_OK;
  if (n > 0) {
    json_t *listing = NULL;
    const char *unknown = NULL;
#ifdef TRW_HAVE_CMD_LIST
    int opset = 0;
    const char *exporter = NULL;
    trw__model_export_facts(model, &opset, &exporter);
    if (!no_fixes &&
        (listing = trw__registry_listing(backend, opset, exporter, err, sizeof(err))) == NULL)
      unknown = err;
#else
    if (!no_fixes)
      unknown = "this torchrw was built without libtorch (TORCHRW_TORCH=OFF), so it has no "
                "registry to ask";
#endif
    if (trw__explain_violations(model, backend, listing, unknown, col.list) != 0) {
      json_decref(listing);
      trw__cmd_error(pos[0], "out of memory");
      rc = TRW__EXIT_BAD;
      goto done;
    }
    json_decref(listing);
  }
  if (!json)
    print_text(col.list, backend);
  if (json) {
    json_t *root = json_pack("{s:o, s:o, s:I, s:O}", "file",
                             trw__json_str(pos[0]), "backend",
                             trw__json_str(backend), "count", (json_int_t)n,
                             "violations", col.list);
    if (root == NULL || trw__json_print(root) != 0) {
      trw__cmd_error(pos[0], "cannot write JSON (out of memory?)");
      rc = TRW__EXIT_BAD;
    }
    json_decref(root);
  }
done:
  json_decref(col.list);
  json_decref(table);
  trw__onnx_free(model);
  return rc;
}
