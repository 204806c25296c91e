/*
 * cmd_explain.c - "torchrw explain --backend B --output M.onnx -- CMD":
 * runs the export CMD twice, plain and under torchrw, and prints per
 * violation of B's capability table what it was before and what is left
 * after, each with the user's Python line and the rewriter that removes
 * it (check_explain.c).
 *
 * The plain run has no preload and no TORCHRW_* variable; its file is
 * kept as M.plain.onnx.  The run under torchrw is `torchrw run` with
 * TORCHRW_SOURCE_LINES=1, so that the TorchScript exporter keeps each
 * node's source lines.  A violation is the same before and after when its
 * operator, its rule up to the first quote (input names change) and its
 * line are (where both files record one: the plain file often does not).
 *
 * Where the backend's engine runs here (backends.c's runner: ONNX
 * Runtime, OpenVINO, ncnn through pnnx), both files are also run in it,
 * by data/engines.py in PYTHON, on the export's example inputs, and held
 * against PyTorch's outputs on them: the run under torchrw has
 * TORCHRW_SAMPLE=1, which writes both beside its file (M.sample.npz).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends.h"
#include "check.h"
#include "check_explain.h"
#include "cmd.h"
#include "json_out.h"
#include "runenv.h"

static void usage(FILE *out)
{
  fprintf(out,
          "usage: torchrw explain --backend B --output M.onnx [--config F] [--plugin P]\n"
          "                       [--python M] [--disable N] [--json] -- CMD ...\n\n"
          "Runs CMD (an export that writes M.onnx) plain, keeping its file as\n"
          "M.plain.onnx, then under torchrw for backend B (torchrw run, with\n"
          "TORCHRW_SOURCE_LINES=1), and checks both files against B's capability\n"
          "table.  Per violation it prints the user's Python line and the rewriter\n"
          "that removes it, and whether torchrw's file still has it:\n\n"
          "    fixed    NODE: OP: RULE      (plain only)\n"
          "    left     NODE: OP: RULE      (in both)\n"
          "    new      NODE: OP: RULE      (under torchrw only)\n\n"
          "Where B's engine runs here (onnxruntime, openvino, ncnn), both files\n"
          "are run in it on the export's example inputs (M.sample.npz, written\n"
          "under torchrw) and their outputs held against PyTorch's.\n\n"
          "Exit status: 0 when torchrw's file has no violation and runs in the\n"
          "engine as PyTorch does, 1 when not, 2 when CMD fails or writes no\n"
          "M.onnx, or on bad usage.\n");
}

struct collect {
  json_t *list;
  int ok;
};

static int on_violation(const char *node, const char *what, const char *rule,
                        const char *source, void *user)
{
  struct collect *col = user;
  trw__json_append(col->list,
                   json_pack("{s:o, s:o, s:o, s:o}", "node", trw__json_str(node), "op",
                             trw__json_str(what), "rule", trw__json_str(rule), "source",
                             trw__json_str(source)),
                   &col->ok);
  return col->ok ? 0 : 1;
}

/* The violations of the file at path, explained; NULL after an error was
 * printed. */
static json_t *violations(const char *path, const char *backend, const json_t *table,
                          const json_t *listing)
{
  trw__onnx_model *model;
  struct collect col = {json_array(), 1};
  char err[1024];
  if (col.list == NULL || trw__cmd_load(path, &model, NULL, NULL) != 0) {
    json_decref(col.list);
    return NULL;
  }
  int n = trw__check_model(model, table, on_violation, &col, err, sizeof err);
  if (n < 0 || !col.ok || trw__explain_violations(model, backend, listing, NULL, col.list) != 0) {
    trw__cmd_error(path, "%s", n < 0 ? err : "out of memory");
    json_decref(col.list);
    col.list = NULL;
  }
  trw__onnx_free(model);
  return col.list;
}

static const char *str(const json_t *obj, const char *key)
{
  const char *s = json_string_value(json_object_get(obj, key));
  return s != NULL ? s : "";
}

/* Whether a and b are the same violation (see the top of the file). */
static int same(const json_t *a, const json_t *b)
{
  const char *ra = str(a, "rule"), *rb = str(b, "rule");
  size_t la = strcspn(ra, "'"), lb = strcspn(rb, "'");
  const json_t *wa = json_object_get(a, "where"), *wb = json_object_get(b, "where");
  if (strcmp(str(a, "op"), str(b, "op")) != 0 || la != lb || strncmp(ra, rb, la) != 0)
    return 0;
  /* The plain file may record no lines where torchrw's does. */
  if (!json_is_object(wa) || !json_is_object(wb))
    return 1;
  return (strcmp(str(wa, "file"), str(wb, "file")) == 0 &&
          json_integer_value(json_object_get(wa, "line")) ==
              json_integer_value(json_object_get(wb, "line")));
}

static void print_one(const char *state, const json_t *v, const char *backend)
{
  const json_t *where = json_object_get(v, "where"), *fixes = json_object_get(v, "fixed_by"), *f;
  size_t k;
  printf("%-8s %s: %s: %s\n", state, str(v, "node"), str(v, "op"), str(v, "rule"));
  if (json_is_object(where))
    printf("         at %s:%lld%s%s%s%s%s\n", str(where, "file"),
           (long long)json_integer_value(json_object_get(where, "line")),
           str(where, "function")[0] ? " (" : "", str(where, "function"),
           str(where, "function")[0] ? ")" : "", str(where, "code")[0] ? ": " : "",
           str(where, "code"));
  else if (str(v, "where_note")[0])
    printf("         at: %s\n", str(v, "where_note"));
  if (json_is_array(fixes) && json_array_size(fixes) == 0)
    printf("         fixed by: no rewriter for %s declares it removes this\n", backend);
  int enabled = 0;
  json_array_foreach(fixes, k, f) {
    int disabled = json_is_true(json_object_get(f, "disabled"));
    enabled |= !disabled;
    printf("         fixed by: %s (%s:%lld)%s\n", str(f, "stable"), str(f, "file"),
           (long long)json_integer_value(json_object_get(f, "line")),
           disabled ? ", disabled by TORCHRW_DISABLE" : "");
  }
  /* The export under torchrw had that rewriter and the violation is still
   * there: it left this call alone (a k torch.export keeps symbolic, say). */
  if (enabled && strcmp(state, "fixed") != 0)
    printf("         but it left this one under torchrw: TORCHRW_LOG=info says why\n");
}

/* Runs argv with no preload and no TORCHRW_* variable; its exit status,
 * or -1. */
static int run_plain(char **argv)
{
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    extern char **environ;
    for (char **e = environ; *e;) {
      if (strncmp(*e, "TORCHRW_", 8) == 0 || strncmp(*e, "LD_PRELOAD=", 11) == 0) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
        unsetenv(name);
        e = environ;
      } else {
        e++;
      }
    }
    execvp(argv[0], argv);
    fprintf(stderr, "torchrw explain: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The name of M.onnx's sibling with suffix ("M.plain.onnx"). */
static void sibling(char *buf, size_t len, const char *output, const char *suffix)
{
  size_t n = strlen(output);
  snprintf(buf, len, "%.*s%s",
           (int)(n > 5 && strcmp(output + n - 5, ".onnx") == 0 ? n - 5 : n), output, suffix);
}

/*
 * Runs torchrw's file and the plain one (when plain is not NULL) in the
 * backend's engine on the sample (data/engines.py explain).  Returns
 * {"name", "torchrw", "plain"}, each file's result as engines.py prints
 * it, or NULL with note saying why
 * nothing ran: an engine that does not run here, no sample, the engine
 * not installed, engines.py failing.
 */
static json_t *run_engine(const char *backend, const char *sample, const char *plain,
                          const char *output, char *note, size_t notelen)
{
  const trw__backend *b;
  const char *version;
  char err[512], dir[4096], script[4200];
  if (trw__backend_parse(backend, &b, &version, err, sizeof err) != 0 || !b->runner) {
    snprintf(note, notelen, "%s does not run here (no engine of it runs on this CPU): "
                            "the check above is all", b ? b->engine : backend);
    return NULL;
  }
  if (access(sample, R_OK) != 0) {
    snprintf(note, notelen, "no %s was written (the export's file is not a path, or its "
                            "model could not be run again): the files were not run in %s",
             sample, b->engine);
    return NULL;
  }
  snprintf(script, sizeof script, "%s/engines.py", trw__data_dir(dir, sizeof dir));
  char *argv[] = {(char *)trw__python_exe(), script, "explain", (char *)b->runner,
                  (char *)sample, (char *)output, (char *)plain, NULL};
  size_t nfiles = plain ? 2 : 1;
  int status;
  fprintf(stderr, "torchrw explain: running %s in %s\n", plain ? "both files" : "the file",
          b->engine);
  char *text = trw__cmd_capture("explain", argv, &status);
  json_t *res = NULL, *files = json_array();
  char *line = text, *next;
  for (; text && files && status == 0 && line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    json_t *row = json_loads(line, 0, NULL);
    if (json_is_object(row) && json_object_get(row, "missing")) {
      snprintf(note, notelen, "%s", str(row, "missing"));
      json_decref(row);
      goto out;
    }
    if (json_is_object(row))
      json_array_append_new(files, row);
    else
      json_decref(row);
  }
  if (!files || json_array_size(files) != nfiles) {
    snprintf(note, notelen, "%s %s did not say how the files ran (exit status %d)",
             trw__python_exe(), script, text ? status : -1);
    goto out;
  }
  res = json_pack("{s:s, s:O}", "name", b->runner, "torchrw", json_array_get(files, 0));
  if (res && plain)
    json_object_set(res, "plain", json_array_get(files, 1));
out:
  json_decref(files);
  free(text);
  return res;
}

/* Puts back the stdout saved in *fd, if any. */
static void restore_stdout(int *fd)
{
  if (*fd < 0)
    return;
  fflush(stdout);
  dup2(*fd, 1);
  close(*fd);
  *fd = -1;
}

/* Whether a file's result from engines.py is a run that matched. */
static int engine_ok(const json_t *r)
{
  return json_is_true(json_object_get(r, "ok"));
}

static void print_engine_row(const char *who, const json_t *r)
{
  if (strcmp(str(r, "stage"), "export") == 0) {
    printf("%-8s not exported: %s\n", who, str(r, "error"));
    return;
  }
  printf("%-8s %s: ", who, str(r, "file"));
  if (json_object_get(r, "error"))
    printf("fails at %s: %s\n", str(r, "stage"), str(r, "error"));
  else if (engine_ok(r))
    printf("runs, matches PyTorch (largest error %.3g of the output's magnitude)\n",
           json_number_value(json_object_get(r, "max_rel")));
  else
    printf("runs, does not match PyTorch: %s\n", str(r, "why"));
}

int trw__cmd_explain(int argc, char **argv)
{
  const char *output = NULL, *backend = NULL;
  int json_out = 0, i = 1, rc = TRW__EXIT_BAD;
  char **run_argv = calloc((size_t)argc + 8, sizeof *run_argv);
  int nrun = 0;
  if (!run_argv)
    return TRW__EXIT_BAD;
  run_argv[nrun++] = "run";
  run_argv[nrun++] = "--no-status";
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      free(run_argv);
      return TRW__EXIT_OK;
    }
    if (strcmp(argv[i], "--json") == 0) {
      json_out = 1;
      continue;
    }
    const char *opt = argv[i];
    int known = strcmp(opt, "--output") == 0 || strcmp(opt, "--backend") == 0 ||
                strcmp(opt, "--config") == 0 || strcmp(opt, "--plugin") == 0 ||
                strcmp(opt, "--python") == 0 || strcmp(opt, "--disable") == 0;
    if (!known || i + 1 >= argc) {
      fprintf(stderr, "torchrw explain: %s '%s' (accepted: --backend B --output M.onnx "
                      "--config --plugin --python --disable --json, then -- CMD)\n",
              known ? "missing value for" : "unknown option", opt);
      free(run_argv);
      return TRW__EXIT_BAD;
    }
    const char *val = argv[++i];
    if (strcmp(opt, "--output") == 0) {
      output = val;
      continue;
    }
    if (strcmp(opt, "--backend") == 0)
      backend = val;
    run_argv[nrun++] = (char *)opt;
    run_argv[nrun++] = (char *)val;
  }
  if (!output || !backend || i >= argc) {
    fprintf(stderr, "torchrw explain: needs --backend B, --output M.onnx and -- CMD "
                    "(see torchrw explain --help)\n");
    free(run_argv);
    return TRW__EXIT_BAD;
  }
  char err[1024], plain[4096], sample[4096], note[10240] = "";
  int saved_stdout = -1; /* stdout while the exports run on stderr */
  json_t *table = trw__check_load_table(backend, err, sizeof err), *before = NULL, *after = NULL;
  json_t *listing = NULL;
  if (!table) {
    fprintf(stderr, "torchrw explain: %s\n", err);
    free(run_argv);
    return TRW__EXIT_BAD;
  }
  sibling(plain, sizeof plain, output, ".plain.onnx");
  sibling(sample, sizeof sample, output, ".sample.npz");

  /* What the exports print goes to stderr: explain's stdout is its report
   * (and --json's document). */
  fflush(stdout);
  saved_stdout = dup(1);
  if (saved_stdout < 0 || dup2(2, 1) < 0) {
    fprintf(stderr, "torchrw explain: cannot send the exports' output to stderr: %s\n",
            strerror(errno));
    goto done;
  }
  fprintf(stderr, "torchrw explain: plain export\n");
  unlink(output);
  unlink(plain);
  int status = run_plain(argv + i);
  /* A plain export that fails is the "before" of a model torchrw makes
   * exportable: only torchrw's file is then checked and run. */
  char plain_failed[256] = "";
  if (status != 0 || access(output, F_OK) != 0) {
    if (status != 0)
      snprintf(plain_failed, sizeof plain_failed, "the plain export failed (exit status %d)",
               status);
    else
      snprintf(plain_failed, sizeof plain_failed, "the plain export wrote no %.200s", output);
    fprintf(stderr, "torchrw explain: %s; only the export under torchrw is checked\n",
            plain_failed);
  } else if (rename(output, plain) != 0) {
    fprintf(stderr, "torchrw explain: cannot keep %s as %s: %s\n", output, plain,
            strerror(errno));
    goto done;
  }
  fprintf(stderr, "torchrw explain: export under torchrw (backend %s)\n", backend);
  run_argv[nrun++] = "--";
  for (int k = i; k < argc; k++)
    run_argv[nrun++] = argv[k];
  setenv("TORCHRW_SOURCE_LINES", "1", 1);
  setenv("TORCHRW_SAMPLE", "1", 1);
  unlink(sample);
  status = trw__cmd_run(nrun, run_argv);
  unsetenv("TORCHRW_SOURCE_LINES");
  unsetenv("TORCHRW_SAMPLE");
  restore_stdout(&saved_stdout);
  if (status != 0 || access(output, F_OK) != 0) {
    fprintf(stderr, "torchrw explain: the export under torchrw %s\n",
            status != 0 ? "failed" : "wrote no such file");
    goto done;
  }
  if (!(listing = trw__registry_listing(backend, 0, NULL, err, sizeof err)))
    fprintf(stderr, "torchrw explain: which rewriters fix these is not known: %s\n", err);
  if (!(before = plain_failed[0] ? json_array() : violations(plain, backend, table, listing)) ||
      !(after = violations(output, backend, table, listing)))
    goto done;

  size_t a, b;
  json_t *va, *vb;
  char *seen = calloc(json_array_size(after) + 1, 1);
  if (!seen)
    goto done;
  json_t *rows = json_array();
  int ok = rows != NULL;
  json_array_foreach(before, b, vb) {
    const char *state = "fixed";
    json_array_foreach(after, a, va) if (!seen[a] && same(vb, va)) {
      seen[a] = 1;
      state = "left";
      break;
    }
    if (json_out)
      trw__json_append(rows, json_pack("{s:s, s:O}", "state", state, "violation", vb), &ok);
    else
      print_one(state, vb, backend);
  }
  /* Without a plain file, what torchrw's has is left, not new. */
  const char *unseen = plain_failed[0] ? "left" : "new";
  json_array_foreach(after, a, va) {
    if (seen[a])
      continue;
    if (json_out)
      trw__json_append(rows, json_pack("{s:s, s:O}", "state", unseen, "violation", va), &ok);
    else
      print_one(unseen, va, backend);
  }
  free(seen);
  json_t *engine = run_engine(backend, sample, plain_failed[0] ? NULL : plain, output, note,
                              sizeof note);
  if (engine && plain_failed[0])
    json_object_set_new(engine, "plain", json_pack("{s:s, s:s, s:s}", "file", plain, "stage",
                                                   "export", "error", plain_failed));
  int engine_fails = engine && !engine_ok(json_object_get(engine, "torchrw"));
  rc = json_array_size(after) > 0 || engine_fails ? TRW__EXIT_FOUND : TRW__EXIT_OK;
  if (json_out) {
    json_t *root = json_pack(
        "{s:s, s:o, s:s, s:o, s:I, s:o, s:o}", "backend", backend, "plain",
        plain_failed[0] ? json_null() : json_string(plain), "torchrw", output, "before",
        plain_failed[0] ? json_null() : json_integer((json_int_t)json_array_size(before)),
        "after", (json_int_t)json_array_size(after), "violations", rows, "engine",
        engine ? engine : json_null());
    if (root && !engine && json_object_set_new(root, "engine_note", json_string(note)) != 0)
      ok = 0;
    if (root && plain_failed[0] &&
        json_object_set_new(root, "plain_note", json_string(plain_failed)) != 0)
      ok = 0;
    if (!ok || root == NULL || trw__json_print(root) != 0)
      rc = TRW__EXIT_BAD;
    json_decref(root);
  } else {
    json_decref(rows);
    if (engine) {
      printf("engine   %s, on the export's example inputs (%s), against PyTorch's outputs:\n",
             str(engine, "name"), sample);
      print_engine_row("plain", json_object_get(engine, "plain"));
      print_engine_row("torchrw", json_object_get(engine, "torchrw"));
      json_decref(engine);
    } else {
      printf("engine   %s\n", note);
    }
    if (plain_failed[0])
      printf("%s: %s, %zu violation%s under torchrw (%s)\n", backend, plain_failed,
             json_array_size(after), json_array_size(after) == 1 ? "" : "s", output);
    else
      printf("%s: %zu violation%s plain (%s), %zu under torchrw (%s)\n", backend,
             json_array_size(before), json_array_size(before) == 1 ? "" : "s", plain,
             json_array_size(after), output);
  }
done:
  restore_stdout(&saved_stdout);
  json_decref(before);
  json_decref(after);
  json_decref(listing);
  json_decref(table);
  free(run_argv);
  return rc;
}
