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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../shim/core/status_wire.h"
#include "cmd.h"
#include "runenv.h"

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

/* ---- the status line ----------------------------------------------------- */

/*
 * While CMD runs on a terminal, one line on stderr says what its exports
 * are doing.  The runtime in CMD sends records (status_wire.h) through a
 * datagram socketpair whose other end CMD gets as TORCHRW_STATUS_FD.  The
 * line is the terminal's bottom row, kept out of the scrolling region
 * (DECSTBM, as apt does), so what CMD prints scrolls above it and is
 * never written over, not even a line CMD has not finished; each redraw
 * saves the cursor, draws the bottom row and puts the cursor back
 * (DECSC/DECRC), in one write.  It is redrawn 5 times a second, so the
 * time ticks between records.  When CMD ends (and when torchrw is killed
 * by SIGQUIT) the row is erased and the whole screen scrolls again.
 */
#define STATUS_REDRAW_MS 200
#define STATUS_PROCS 64

typedef struct {
  int sock;    /* torchrw's end, -1 when the line is off */
  int peer;    /* CMD's end, closed after fork */
  unsigned long long peer_ino;
  int rows; /* the terminal's rows when the region was set; 0: not set */
  uint32_t last_pid; /* the phase shown is the latest sender's */
  struct {
    uint32_t pid;
    trw__status_record r;
  } procs[STATUS_PROCS]; /* the latest record of each process that sent */
  size_t nprocs;
} status_line;

static int status_wake[2] = {-1, -1}; /* SIGCHLD wakes the loop */
static volatile sig_atomic_t status_rows; /* st.rows, for the SIGQUIT handler */

static void on_child(int sig)
{
  (void)sig;
  int saved = errno;
  if (status_wake[1] >= 0)
    (void)!write(status_wake[1], "", 1);
  errno = saved;
}

static void write_all(const char *s, size_t len)
{
  while (len > 0) {
    ssize_t n = write(2, s, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return; /* a terminal that went away: nothing to clean */
    s += n;
    len -= (size_t)n;
  }
}

/* Erases the status row (rows: the terminal's when it was drawn) and
 * gives the whole screen back to scrolling; the cursor stays where CMD
 * left it.  Async-signal-safe: no stdio, no allocation. */
static void status_erase(int rows)
{
  char buf[48], num[12];
  size_t n = 0, k = 0;
  for (int v = rows; v > 0 && k < sizeof num; v /= 10)
    num[k++] = (char)('0' + v % 10);
  const char *head = "\0337\033[";
  while (*head)
    buf[n++] = *head++;
  while (k > 0)
    buf[n++] = num[--k];
  const char *tail = ";1H\033[2K\033[r\0338";
  while (*tail)
    buf[n++] = *tail++;
  write_all(buf, n);
}

/* SIGQUIT (Ctrl-\) ends torchrw as before, but not with the line drawn. */
static void quit_clean(int sig)
{
  if (status_rows > 0)
    status_erase(status_rows);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Whether the line is wanted, and its channel made: 0, or -1 (off). */
static int status_open(status_line *st, int wanted)
{
  memset(st, 0, sizeof *st);
  st->sock = st->peer = -1;
  const char *term = getenv("TERM");
  if (!wanted || !isatty(2) || (term && strcmp(term, "dumb") == 0))
    return -1;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
    return -1;
  struct stat sb;
  if (fstat(sv[1], &sb) != 0 || pipe2(status_wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  st->sock = sv[0];
  st->peer = sv[1];
  st->peer_ino = (unsigned long long)sb.st_ino;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_child;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGCHLD, &sa, NULL);
  sa.sa_handler = quit_clean;
  sa.sa_flags = 0;
  sigaction(SIGQUIT, &sa, NULL);
  return 0;
}

/* In the child, before exec: CMD's end of the channel, or no variable
 * (one inherited from an outer torchrw run is not for this CMD). */
static void status_child(const status_line *st)
{
  if (st->peer < 0) {
    unsetenv("TORCHRW_STATUS_FD");
    return;
  }
  signal(SIGQUIT, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  char v[64];
  snprintf(v, sizeof v, "%d:%llu", st->peer, st->peer_ino);
  int flags = fcntl(st->peer, F_GETFD);
  if (flags >= 0 && fcntl(st->peer, F_SETFD, flags & ~FD_CLOEXEC) == 0)
    setenv("TORCHRW_STATUS_FD", v, 1);
  else
    unsetenv("TORCHRW_STATUS_FD");
}

static void status_take(status_line *st, const trw__status_record *r)
{
  if (r->magic != TRW__STATUS_MAGIC || r->version != TRW__STATUS_VERSION ||
      r->phase > TRW__PHASE_WRITING)
    return;
  size_t i = 0;
  while (i < st->nprocs && st->procs[i].pid != r->pid)
    i++;
  if (i == st->nprocs) {
    if (st->nprocs == STATUS_PROCS)
      i = 0; /* more senders than kept: the first one's slot is reused */
    else
      st->nprocs++;
  }
  st->procs[i].pid = r->pid;
  st->procs[i].r = *r;
  st->last_pid = r->pid;
}

/* Reads every record waiting; 1 when a phase changed. */
static int status_drain(status_line *st)
{
  int changed = 0;
  trw__status_record r;
  ssize_t n;
  while ((n = recv(st->sock, &r, sizeof r, MSG_DONTWAIT)) >= 0 || errno == EINTR) {
    if (n != (ssize_t)sizeof r)
      continue;
    uint32_t before = TRW__PHASE_RUNNING;
    for (size_t i = 0; i < st->nprocs; i++)
      if (st->procs[i].pid == st->last_pid)
        before = st->procs[i].r.phase;
    status_take(st, &r);
    changed |= r.phase != before;
  }
  char buf[64];
  while (read(status_wake[0], buf, sizeof buf) > 0)
    ;
  return changed;
}

static void status_draw(status_line *st, double secs)
{
  static const char *const phases[] = {"running", "tracing", "ONNX conversion", "writing"};
  unsigned long long ops = 0, fired = 0;
  uint32_t phase = TRW__PHASE_RUNNING;
  for (size_t i = 0; i < st->nprocs; i++) {
    ops += st->procs[i].r.ops;
    fired += st->procs[i].r.fired;
    if (st->procs[i].pid == st->last_pid)
      phase = st->procs[i].r.phase;
  }
  char elapsed[32];
  if (secs < 60)
    snprintf(elapsed, sizeof elapsed, "%.1f s", secs);
  else
    snprintf(elapsed, sizeof elapsed, "%d min %02d s", (int)secs / 60, (int)secs % 60);
  char text[256];
  int len = snprintf(text, sizeof text,
                     "torchrw: %s | %llu operator%s traced | %llu rewrite%s fired | %s",
                     phases[phase], ops, ops == 1 ? "" : "s", fired, fired == 1 ? "" : "s",
                     elapsed);
  if (len < 0)
    return;
  if ((size_t)len >= sizeof text)
    len = sizeof text - 1;
  /* A terminal of one row has no room for it; an unknown one neither. */
  struct winsize ws;
  if (ioctl(2, TIOCGWINSZ, &ws) != 0 || ws.ws_row < 2 || ws.ws_col < 2)
    return;
  /* Never wider than the terminal: a wrapped line would scroll. */
  if (len > ws.ws_col - 1)
    len = ws.ws_col - 1;
  char line[sizeof text + 128];
  int n = 0;
  if (st->rows == 0) {
    /* Room for the row first: a line feed (scrolling the screen when the
     * cursor is on the last row) and back up, then the region above it. */
    n = snprintf(line, sizeof line, "\n\0337\033[1;%dr\0338\033[1A", ws.ws_row - 1);
  } else if (st->rows != ws.ws_row) {
    /* Resized: the old row goes, the region follows the new size. */
    n = snprintf(line, sizeof line, "\0337\033[%d;1H\033[2K\033[1;%dr\0338", st->rows,
                 ws.ws_row - 1);
  }
  if (n < 0)
    n = 0;
  int m = snprintf(line + n, sizeof line - (size_t)n, "\0337\033[%d;1H\033[2K%.*s\0338",
                   ws.ws_row, len, text);
  /* Known to the SIGQUIT handler before the row can be on the screen: a
   * signal during the write still erases it (erasing a row not yet drawn
   * is harmless). */
  st->rows = status_rows = ws.ws_row;
  if (m > 0)
    write_all(line, (size_t)(n + m));
}

static double since(const struct timespec *start)
{
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Waits for pid, drawing the line; leaves it erased. */
static void status_wait(status_line *st, pid_t pid, int *status, const struct timespec *start)
{
  double last_draw = 0; /* the first draw after 200 ms: a quick CMD shows none */
  for (;;) {
    pid_t w = waitpid(pid, status, WNOHANG);
    if (w == pid || (w < 0 && errno != EINTR))
      break;
    double t = since(start);
    int timeout = (int)((last_draw + STATUS_REDRAW_MS / 1e3 - t) * 1e3) + 1;
    struct pollfd p[2] = {{st->sock, POLLIN, 0}, {status_wake[0], POLLIN, 0}};
    int changed = 0;
    if (poll(p, 2, timeout > 0 ? timeout : 0) > 0)
      changed = status_drain(st);
    t = since(start);
    /* A phase change shows at once, but no more than 10 redraws a second. */
    if (t - last_draw >= STATUS_REDRAW_MS / 1e3 ||
        (changed && t - last_draw >= 0.1)) {
      status_draw(st, t);
      last_draw = t;
    }
  }
  if (st->rows > 0)
    status_erase(st->rows);
  st->rows = status_rows = 0;
}

static void status_close(status_line *st)
{
  if (st->sock < 0)
    return;
  signal(SIGQUIT, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  close(st->sock);
  close(status_wake[0]);
  close(status_wake[1]);
  status_wake[0] = status_wake[1] = -1;
  st->sock = -1;
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
  status_line st;
  status_open(&st, want_status);
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
    status_close(&st);
    if (st.peer >= 0)
      close(st.peer);
    trw__runopts_free(&o);
    return TRW__EXIT_BAD;
  }
  if (pid == 0) {
    status_child(&st);
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
    status_wait(&st, pid, &status, &start);
  else
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
  status_close(&st);
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
