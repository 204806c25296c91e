/*
 * cmd_list.c - `torchrw list [--backend B] [--json]`: every registered
 * rewriter (built-in, plugins, Python modules), and for a backend which one
 * each name selects.  The registry lives in the runtime, which is also the
 * torchrw Python module, so the listing asks a Python process for it.
 */
#define _GNU_SOURCE
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_explain.h"
#include "cmd.h"
#include "runenv.h"

static const char LIST_SCRIPT[] =
    "import sys, torchrw\n"
    "torchrw._prepare()\n"
    "sys.stdout.write(torchrw._list_json(sys.argv[1] or None, int(sys.argv[2]),\n"
    "                                    sys.argv[3] or None))\n";

static void usage(FILE *out)
{
  fprintf(out, "usage: torchrw list [--backend B] [--opset N] [--json] [--config F]\n"
               "                    [--plugin P] [--python M] [--disable N]\n\n"
               "Lists every rewriter torchrw knows: built-in, from plugins and from\n"
               "Python modules, with kind, name, backend, IR, checkers and where it\n"
               "was registered.  With --backend, '*' marks the rewriter each name\n"
               "selects for that backend (ONNX export at --opset, default: the\n"
               "config's, else 14).\n");
}

/* Runs the Python listing and returns its stdout (malloc'd), or NULL. */
static char *run_listing(const char *backend, const char *opset, const char *exporter)
{
  char *argv[] = {(char *)trw__python_exe(), "-c", (char *)LIST_SCRIPT,
                  (char *)(backend ? backend : ""), (char *)(opset ? opset : "0"),
                  (char *)(exporter ? exporter : ""), NULL};
  int status;
  char *out = trw__cmd_capture("list", argv, &status);
  if (out && status != 0) {
    free(out);
    out = NULL;
  }
  return out;
}

/* Where the build tree's torchrw package is, on PYTHONPATH; 0 or -1. */
static int python_path(void)
{
  char libdir[PATH_MAX], path[PATH_MAX + 16], real[PATH_MAX];
  if (trw__libdir(libdir, sizeof libdir) != 0)
    return -1;
  snprintf(path, sizeof path, "%s/../python", libdir);
  /* The build tree's torchrw package; an installed torchrw has its own. */
  if (realpath(path, real))
    trw__env_prepend("PYTHONPATH", real, ':');
  return 0;
}

json_t *trw__registry_listing(const char *backend, int opset, const char *exporter, char *err,
                              size_t errlen)
{
  char opset_text[16];
  snprintf(opset_text, sizeof opset_text, "%d", opset > 0 ? opset : 0);
  if (python_path() != 0) {
    snprintf(err, errlen, "the torchrw libraries were not found");
    return NULL;
  }
  char *text = run_listing(backend, opset_text, exporter);
  if (!text) {
    snprintf(err, errlen, "the registry could not be read from %s (see the error above)",
             trw__python_exe());
    return NULL;
  }
  json_error_t je;
  json_t *doc = json_loads(text, 0, &je);
  free(text);
  if (!json_is_array(json_object_get(doc, "rewriters"))) {
    snprintf(err, errlen, "the registry listing is not what torchrw list --json prints");
    json_decref(doc);
    return NULL;
  }
  return doc;
}

int trw__cmd_list(int argc, char **argv)
{
  trw__runopts o = {0};
  int json_out = 0;
  const char *opset = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      trw__runopts_free(&o);
      return TRW__EXIT_OK;
    }
    if (strcmp(argv[i], "--json") == 0) {
      json_out = 1;
      continue;
    }
    if (strcmp(argv[i], "--opset") == 0 || strncmp(argv[i], "--opset=", 8) == 0) {
      opset = argv[i][7] == '=' ? argv[i] + 8 : (i + 1 < argc ? argv[++i] : NULL);
      if (!opset || atoi(opset) <= 0) {
        fprintf(stderr, "torchrw list: --opset needs a number\n");
        trw__runopts_free(&o);
        return TRW__EXIT_BAD;
      }
      continue;
    }
    int took = trw__runopts_take("list", &o, argc, argv, &i);
    if (took <= 0 || o.trace || o.report || o.log) {
      if (took == 0)
        fprintf(stderr, "torchrw list: unknown %s '%s' (accepted: --backend --opset --json "
                        "--config --plugin --python --disable --help)\n",
                argv[i][0] == '-' ? "option" : "argument", argv[i]);
      else if (took > 0)
        fprintf(stderr, "torchrw list: '%s' is for torchrw run\n", argv[i]);
      trw__runopts_free(&o);
      return TRW__EXIT_BAD;
    }
  }
  if (python_path() != 0) {
    trw__runopts_free(&o);
    return TRW__EXIT_BAD;
  }
  const char *backend = o.backend;
  o.backend = NULL; /* the listing's backend is an argument, not the trace's */
  trw__runopts_export(&o);
  trw__runopts_free(&o);

  char *text = run_listing(backend, opset, NULL);
  if (!text) {
    fprintf(stderr, "torchrw list: the registry could not be read (see the error above)\n");
    return TRW__EXIT_BAD;
  }
  if (json_out) {
    fputs(text, stdout);
    fputc('\n', stdout);
    free(text);
    return TRW__EXIT_OK;
  }
  json_error_t je;
  json_t *doc = json_loads(text, 0, &je);
  free(text);
  json_t *list = json_object_get(doc, "rewriters");
  if (!json_is_array(list)) {
    fprintf(stderr, "torchrw list: unexpected listing\n");
    json_decref(doc);
    return TRW__EXIT_BAD;
  }
  if (backend)
    printf("rewriters for backend %s (onnx, opset %lld); * = selected\n\n", backend,
           (long long)json_integer_value(json_object_get(doc, "opset")));
  /* The stable name is what TORCHRW_DISABLE takes ("builtin:" marks torchrw's own). */
  printf("%-3s %-9s %-56s %-12s %-7s %s\n", backend ? "SEL" : "", "KIND", "STABLE NAME", "IR",
         "LANG", "SITE");
  size_t i;
  json_t *r;
  json_array_foreach(list, i, r)
  {
    json_t *checkers = json_object_get(r, "checkers");
    const char *mark = json_is_true(json_object_get(r, "disabled")) ? "off"
                       : json_is_true(json_object_get(r, "selected")) ? "*"
                                                                      : "";
    printf("%-3s %-9s %-56s %-12s %-7s %s:%lld", mark,
           json_string_value(json_object_get(r, "kind")),
           json_string_value(json_object_get(r, "stable")),
           json_string_value(json_object_get(r, "ir")),
           json_string_value(json_object_get(r, "lang")),
           json_string_value(json_object_get(r, "file")),
           (long long)json_integer_value(json_object_get(r, "line")));
    size_t c;
    json_t *name;
    json_array_foreach(checkers, c, name)
        printf("%s%s", c ? ", " : "  if ", json_string_value(name));
    printf("\n");
  }
  printf("\n%zu rewriters\n", json_array_size(list));
  json_decref(doc);
  return TRW__EXIT_OK;
}
