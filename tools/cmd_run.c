/*
 * cmd_run.c - `torchrw run [options] -- CMD ...`: runs CMD with libtorchrw.so
 * preloaded and the TORCHRW_* variables set, then summarises what was
 * rewritten.  The exit status is CMD's.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "runenv.h"
#include "status_line.h"

static void usage(FILE *out)
{
  fprintf(out,
          "usage: torchrw run [OPTIONS] -- CMD [ARGS...]\n\n"
          "Runs CMD (an unchanged export script, e.g. python3 export.py) with\n"
          "libtorchrw.so preloaded, then prints what was rewritten.\n\n"
          "options (each sets the TORCHRW_ variable named):\n"
          "  --backend B     TORCHRW_BACKEND: tensorrt, onnxruntime, ncnn, openvino, ...;\n"
          "                  B:VERSION for an engine version (tensorrt:8.5)\n"
          "  --config F      TORCHRW_CONFIG: deployment config (JSON)\n"
          "  --plugin P      TORCHRW_PLUGINS: a C plugin .so (repeatable)\n"
          "  --python M      TORCHRW_PYTHON: a Python rewriter module or .py (repeatable)\n"
          "  --disable N     TORCHRW_DISABLE: switch a rewriter off by name (repeatable)\n"
          "  --report R      TORCHRW_REPORT: also append the report to R (JSON Lines)\n"
          "  --log L         TORCHRW_LOG: error, warn, info, debug\n"
          "  --trace[=FILE]  TORCHRW_TRACE: log every operator the trace calls\n"
          "  --no-status     no status line on the terminal\n\n"
          "The build's Python directory is put on PYTHONPATH, so CMD can import\n"
          "torchrw.  SIGINT, SIGTERM and SIGHUP sent to torchrw go on to CMD.  The\n"
          "summary goes to stderr; the exit status is CMD's (128 + the signal when\n"
          "a signal ended it).\n\n"
          "When stderr is a terminal, one status line shows while CMD runs: the\n"
          "export's phase (tracing, ONNX conversion, writing), the operators\n"
          "traced, the rewrites fired and the time elapsed, on the terminal's\n"
          "bottom row (what CMD prints scrolls above it), redrawn 5 times a\n"
          "second and erased when CMD ends.  CMD gets\n"
          "TORCHRW_STATUS_FD for it.  When stderr is not a terminal (or with\n"
          "--no-status, or TERM=dumb), nothing of it is printed.\n");
}

/* ---- files written ------------------------------------------------------ */

/* The regular files under the working directory (3 levels, no hidden or
 * cache directories) with their modification times, before and after. */
typedef struct {
  char *path;
  struct timespec mtime;
  long long size;
} file_seen;

typedef struct {
  file_seen *v;
  size_t n, cap;
} file_list;

static void scan(const char *dir, const char *shown, int depth, file_list *out)
{
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && out->n < 20000) {
    if (e->d_name[0] == '.' || strcmp(e->d_name, "__pycache__") == 0 ||
        strcmp(e->d_name, "node_modules") == 0)
      continue;
    char path[PATH_MAX], rel[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    snprintf(rel, sizeof rel, "%s%s%s", shown, *shown ? "/" : "", e->d_name);
    struct stat st;
    if (lstat(path, &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode) && depth < 3) {
      scan(path, rel, depth + 1, out);
    } else if (S_ISREG(st.st_mode)) {
      if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 256;
        file_seen *grown = realloc(out->v, cap * sizeof *grown);
        if (!grown)
          break;
        out->v = grown;
        out->cap = cap;
      }
      out->v[out->n++] = (file_seen){strdup(rel), st.st_mtim, (long long)st.st_size};
    }
  }
  closedir(d);
}

static void free_list(file_list *l)
{
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i].path);
  free(l->v);
}

/* Prints the files that are new or changed; skip is a path to leave out. */
static void print_written(const file_list *before, const file_list *after, const char *skip)
{
  for (size_t i = 0; i < after->n; i++) {
    const file_seen *f = &after->v[i];
    int changed = 1;
    for (size_t j = 0; j < before->n && changed; j++)
      if (strcmp(before->v[j].path, f->path) == 0)
        changed = before->v[j].mtime.tv_sec != f->mtime.tv_sec ||
                  before->v[j].mtime.tv_nsec != f->mtime.tv_nsec || before->v[j].size != f->size;
    if (!changed || !f->path || (skip && strcmp(f->path, skip) == 0))
      continue;
    char size[32];
    fprintf(stderr, "torchrw:   wrote      %s (%s)\n", f->path,
            trw__cmd_bytes((unsigned long long)f->size, size, sizeof size));
  }
}

/* ---- the report ----------------------------------------------------------- */

/* The records the report got since offset (JSON Lines, one per trace): a
 * JSON array, empty when there are none or the file cannot be read back. */
static json_t *records_since(const char *report, long long offset)
{
  json_t *traces = json_array();
  FILE *f = fopen(report, "r");
  if (!f)
    return traces;
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || fseeko(f, offset, SEEK_SET) != 0) {
    fclose(f);
    return traces;
  }
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    json_t *record = json_loads(line, 0, NULL);
    if (json_is_object(record))
      json_array_append(traces, record);
    json_decref(record);
  }
  free(line);
  fclose(f);
  return traces;
}

/* Prints what the records since offset say; returns how many there were. */
static size_t summarise(const char *report, long long offset)
{
  json_t *traces = records_since(report, offset);
  if (json_array_size(traces) == 0) {
    json_decref(traces);
    return 0;
  }
  /* Counts per rewriter over all traces, in first-seen order. */
  json_t *fired = json_object(), *order = json_array(), *missing = json_object();
  size_t i;
  json_t *t;
  json_array_foreach(traces, i, t)
  {
    size_t j;
    json_t *f;
    json_array_foreach(json_object_get(t, "fired"), j, f)
    {
      const char *name = json_string_value(json_object_get(f, "name"));
      if (!name)
        continue;
      json_t *seen = json_object_get(fired, name);
      json_int_t n = json_integer_value(json_object_get(f, "count"));
      if (seen) {
        json_object_set_new(seen, "count",
                            json_integer(json_integer_value(json_object_get(seen, "count")) + n));
      } else {
        json_object_set_new(fired, name, json_deep_copy(f));
        json_array_append_new(order, json_string(name));
      }
    }
    json_object_update(missing, json_object_get(t, "not_found"));
  }
  fprintf(stderr, "torchrw:   %zu trace%s\n", json_array_size(traces),
          json_array_size(traces) == 1 ? "" : "s");
  json_t *name;
  json_array_foreach(order, i, name)
  {
    json_t *f = json_object_get(fired, json_string_value(name));
    fprintf(stderr, "torchrw:   fired      %s x%lld  (%s:%lld)\n", json_string_value(name),
            (long long)json_integer_value(json_object_get(f, "count")),
            json_string_value(json_object_get(f, "file")),
            (long long)json_integer_value(json_object_get(f, "line")));
  }
  if (json_array_size(order) == 0)
    fprintf(stderr, "torchrw:   no rewriter fired\n");
  const char *key;
  json_t *why;
  json_object_foreach(missing, key, why)
      fprintf(stderr, "torchrw:   not found  %s (%s)\n", key, json_string_value(why));
  json_decref(fired);
  json_decref(order);
  json_decref(missing);
  size_t n = json_array_size(traces);
  json_decref(traces);
  return n;
}

/* ---- no trace: was there a torch at all? --------------------------------- */

/* The Python interpreter CMD runs: argv[0] itself when its name starts with
 * "python", else the interpreter of a script's "#!" line; NULL otherwise. */
static const char *python_of(char *const argv[], char *buf, size_t len)
{
  const char *base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  if (strncmp(base, "python", 6) == 0)
    return argv[0];
  char path[PATH_MAX];
  const char *file = argv[0];
  if (!strchr(file, '/')) { /* on PATH */
    const char *p = getenv("PATH");
    file = NULL;
    for (const char *dir = p; dir && *dir && !file;) {
      size_t n = strcspn(dir, ":");
      snprintf(path, sizeof path, "%.*s/%s", (int)n, dir, argv[0]);
      if (access(path, X_OK) == 0)
        file = path;
      dir += n + (dir[n] == ':');
    }
  }
  FILE *f = file ? fopen(file, "r") : NULL;
  char line[512] = "";
  if (!f)
    return NULL;
  if (!fgets(line, sizeof line, f))
    line[0] = '\0';
  fclose(f);
  if (strncmp(line, "#!", 2) != 0 || !strstr(line, "python"))
    return NULL;
  line[strcspn(line, "\r\n")] = '\0';
  char *interp = line + 2 + strspn(line + 2, " \t");
  /* "#!/usr/bin/env python3": the second word is the interpreter. */
  if (strncmp(interp, "/usr/bin/env ", 13) == 0)
    interp += 13 + strspn(interp + 13, " \t");
  interp[strcspn(interp, " \t")] = '\0';
  snprintf(buf, len, "%s", interp);
  return buf;
}

/* 1 when python cannot import torch, 0 when it can or cannot be asked. */
static int lacks_torch(const char *python)
{
  pid_t pid = fork();
  if (pid < 0)
    return 0;
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    unsetenv("LD_PRELOAD");
    execlp(python, python, "-c",
           "import importlib.util, sys; sys.exit(3 if importlib.util.find_spec('torch') is None else 0)",
           (char *)NULL);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  return WIFEXITED(status) && WEXITSTATUS(status) == 3;
}

/* Says why nothing was traced when the command's Python has no torch. */
static void explain_no_trace(char *const argv[])
{
  char buf[PATH_MAX];
  const char *python = python_of(argv, buf, sizeof buf);
  if (python && lacks_torch(python))
    fprintf(stderr,
            "torchrw:   %s has no torch (import torch fails there), so nothing was "
            "exported; run the script with an interpreter that has torch, e.g. %s\n",
            python, trw__python_exe());
}

/* ---- signals -------------------------------------------------------------- */

static volatile pid_t child_pid;
static const int passed_on[] = {SIGINT, SIGTERM, SIGHUP};
#define NPASSED (sizeof passed_on / sizeof passed_on[0])

/* A signal sent to torchrw goes on to the command, which decides what it
 * means; torchrw waits for it and exits with its status.  One the
 * terminal sends (si_code SI_KERNEL) reached the command's process group
 * already: passing it on would deliver it twice. */
static void pass_on(int sig, siginfo_t *info, void *ucontext)
{
  (void)ucontext;
  if (child_pid > 0 && (!info || info->si_code != SI_KERNEL))
    kill(child_pid, sig);
}

static void block_passed_on(int how, sigset_t *old)
{
  sigset_t set;
  sigemptyset(&set);
  for (size_t k = 0; k < NPASSED; k++)
    sigaddset(&set, passed_on[k]);
  sigprocmask(how, &set, old);
}

/* ---- run ---------------------------------------------------------------- */

int trw__cmd_run(int argc, char **argv)
{
  trw__runopts o = {0};
  int i = 1, want_status = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (strcmp(argv[i], "--no-status") == 0) {
      want_status = 0;
      continue;
    }
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      trw__runopts_free(&o);
      return TRW__EXIT_OK;
    }
    int took = trw__runopts_take("run", &o, argc, argv, &i);
    if (took < 0) {
      trw__runopts_free(&o);
      return TRW__EXIT_BAD;
    }
    if (took == 0) {
      if (argv[i][0] != '-')
        break; /* CMD without "--" */
      fprintf(stderr, "torchrw run: unknown option '%s' (accepted: --backend --config "
                      "--plugin --python --disable --report --log --trace --no-status --help)\n",
              argv[i]);
      trw__runopts_free(&o);
      return TRW__EXIT_BAD;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "torchrw run: no command given (torchrw run [OPTIONS] -- CMD ...)\n");
    trw__runopts_free(&o);
    return TRW__EXIT_BAD;
  }
  char libdir[PATH_MAX];
  if (trw__libdir(libdir, sizeof libdir) != 0) {
    trw__runopts_free(&o);
    return TRW__EXIT_BAD;
  }
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/libtorchrw.so", libdir);
  trw__env_prepend("LD_PRELOAD", path, ':');
  snprintf(path, sizeof path, "%s/../python", libdir);
  char real[PATH_MAX];
  /* The build tree's torchrw package; an installed torchrw has its own. */
  if (realpath(path, real))
    trw__env_prepend("PYTHONPATH", real, ':');

  /* Without --report the summary reads a private report (mkstemp: a name
   * nobody can plant anything at), removed after.  With one, the records
   * CMD appends to it: what was there before stays, and is not summarised. */
  char tmp_report[] = "/tmp/torchrw-report-XXXXXX";
  int own_report = !o.report;
  long long offset = 0;
  if (own_report) {
    int fd = mkstemp(tmp_report);
    if (fd < 0) {
      fprintf(stderr, "torchrw run: cannot create a temporary report: %s\n", strerror(errno));
      trw__runopts_free(&o);
      return TRW__EXIT_BAD;
    }
    close(fd); /* kept, empty: the runtime appends; nothing means no trace ran */
    o.report = tmp_report;
  } else {
    struct stat st;
    if (stat(o.report, &st) == 0 && S_ISREG(st.st_mode))
      offset = (long long)st.st_size;
  }
  trw__runopts_export(&o);
  const char *backend = getenv("TORCHRW_BACKEND");
  if (!backend || !*backend)
    fprintf(stderr, "torchrw run: no backend (--backend or TORCHRW_BACKEND): nothing will "
                    "be rewritten\n");

  char cwd[PATH_MAX];
  file_list before = {0}, after = {0};
  int have_cwd = getcwd(cwd, sizeof cwd) != NULL;
  if (have_cwd)
    scan(cwd, "", 0, &before);
  trw__status_line st;
  trw__status_open(&st, want_status);
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  fflush(NULL);
  /* Blocked across fork: a signal that comes before the handler is in
   * place waits for it, and the child starts with its own default. */
  sigset_t mask;
  block_passed_on(SIG_BLOCK, &mask);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "torchrw run: fork failed: %s\n", strerror(errno));
    sigprocmask(SIG_SETMASK, &mask, NULL);
    trw__status_close(&st);
    if (st.peer >= 0)
      close(st.peer);
    trw__runopts_free(&o);
    return TRW__EXIT_BAD;
  }
  if (pid == 0) {
    trw__status_child(&st);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    execvp(argv[i], argv + i);
    fprintf(stderr, "torchrw run: cannot run %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  child_pid = pid;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = pass_on;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (size_t k = 0; k < NPASSED; k++)
    sigaction(passed_on[k], &sa, NULL);
  sigprocmask(SIG_SETMASK, &mask, NULL);
  int status = 0;
  if (st.peer >= 0) {
    close(st.peer);
    st.peer = -1;
  }
  if (st.sock >= 0)
    trw__status_wait(&st, pid, &status, &start);
  else
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
  trw__status_close(&st);
  clock_gettime(CLOCK_MONOTONIC, &end);
  double secs = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

  fprintf(stderr, "torchrw: %s finished in %.2f s, exit status %d%s%s%s\n", argv[i], secs, code,
          backend && *backend ? " (backend " : "", backend && *backend ? backend : "",
          backend && *backend ? ")" : "");
  if (summarise(o.report, offset) == 0 && backend && *backend) {
    fprintf(stderr, "torchrw:   no trace ran: nothing was rewritten\n");
    explain_no_trace(argv + i);
  }
  if (have_cwd) {
    scan(cwd, "", 0, &after);
    print_written(&before, &after, own_report ? NULL : o.report);
  }
  free_list(&before);
  free_list(&after);
  if (own_report)
    unlink(tmp_report);
  trw__runopts_free(&o);
  return code;
}
