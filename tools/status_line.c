/* status_line.c - the status line of `torchrw run` (status_line.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "status_line.h"

#define STATUS_REDRAW_MS 200

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
int trw__status_open(trw__status_line *st, int wanted)
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
void trw__status_child(const trw__status_line *st)
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

static void status_take(trw__status_line *st, const trw__status_record *r)
{
  if (r->magic != TRW__STATUS_MAGIC || r->version != TRW__STATUS_VERSION ||
      r->phase > TRW__PHASE_WRITING)
    return;
  size_t i = 0;
  while (i < st->nprocs && st->procs[i].pid != r->pid)
    i++;
  if (i == st->nprocs) {
    if (st->nprocs == TRW__STATUS_PROCS)
      i = 0; /* more senders than kept: the first one's slot is reused */
    else
      st->nprocs++;
  }
  st->procs[i].pid = r->pid;
  st->procs[i].r = *r;
  st->last_pid = r->pid;
}

/* Reads every record waiting; 1 when a phase changed. */
static int status_drain(trw__status_line *st)
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

static void status_draw(trw__status_line *st, double secs)
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
void trw__status_wait(trw__status_line *st, pid_t pid, int *status, const struct timespec *start)
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

void trw__status_close(trw__status_line *st)
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
