/*
 * output.c - the files torchrw writes because the user asked:
 * TORCHRW_REPORT and TORCHRW_TRACE.
 *
 * torchrw runs inside other people's processes, often as root, so what it
 * writes follows the rules a careful shell redirection follows:
 *
 *   - it appends to what the user named and never replaces it: no
 *     temporary file, no rename, so a device node, a FIFO or a symlink
 *     (/dev/null, /dev/stdout) is written through and stays what it is;
 *   - a file that does not exist is created with O_CREAT|O_EXCL, which
 *     follows no symlink, not even a dangling one planted there;
 *   - a directory, a block device, a socket, a read-only file, a FIFO
 *     nobody reads and a path in a missing directory each get one error
 *     naming the variable and the reason, and nothing is written;
 *   - opening never blocks (O_NONBLOCK: a FIFO without a reader);
 *   - the file the process already has as stdout or stderr is written
 *     through that descriptor, sharing its offset (`> log` and
 *     TORCHRW_REPORT=/dev/stdout do not overwrite the program's output);
 *   - each process opens its own descriptor (a fork child reopens), and a
 *     record is written whole under an exclusive flock, so processes that
 *     export side by side append whole records to one file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

typedef struct output {
  const char *var;  /* "TORCHRW_REPORT" */
  const char *what; /* "report", for messages */
  int stderr_ok;    /* "1" and "stderr" mean the process's stderr */
  int state;        /* 0 not opened, 1 open, -1 refused (error logged) */
  int fd;           /* ours, or 2 for stderr */
  pid_t pid;        /* the process that opened fd */
  FILE *stream;     /* over fd, for trw__output_stream */
  char path[PATH_MAX];
} output;

static output outputs[] = {
    [TRW__OUT_REPORT] = {"TORCHRW_REPORT", "report", 0, 0, -1, 0, NULL, ""},
    [TRW__OUT_TRACE] = {"TORCHRW_TRACE", "operator trace", 1, 0, -1, 0, NULL, ""},
};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* A fork child must not inherit the lock held by a thread it does not have. */
static void unlock_in_child(void) { pthread_mutex_init(&lock, NULL); }
__attribute__((constructor)) static void at_fork(void) { pthread_atfork(NULL, NULL, unlock_in_child); }

static output *get(trw__output_id id)
{
  return (unsigned)id < sizeof outputs / sizeof outputs[0] ? &outputs[id] : NULL;
}

/* The value of o's variable, or NULL when it asks for nothing. */
static const char *wanted(const output *o)
{
  const char *v = getenv(o->var);
  if (!v || !*v || (o->stderr_ok && strcmp(v, "0") == 0))
    return NULL;
  return v;
}

static int to_stderr(const output *o, const char *v)
{
  return o->stderr_ok && (strcmp(v, "1") == 0 || strcmp(v, "stderr") == 0);
}

/* Closes o's descriptor (not stderr's). */
static void close_output(output *o)
{
  if (o->stream)
    fclose(o->stream); /* closes fd */
  else if (o->fd > 2)
    close(o->fd);
  o->stream = NULL;
  o->fd = -1;
}

static void refuse(output *o, const char *fmt, ...) TRW_PRINTF(2, 3);
static void refuse(output *o, const char *fmt, ...)
{
  char why[PATH_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  if (o->state != -1)
    trw__log(TRW__LOG_ERROR, "%s=%s %s; no %s is written", o->var, o->path, why, o->what);
  close_output(o);
  o->state = -1;
}

static const char *kind_of(mode_t m)
{
  return S_ISDIR(m) ? "is a directory"
         : S_ISBLK(m) ? "is a block device"
         : S_ISSOCK(m) ? "is a socket"
         : "is not a file torchrw writes to";
}

/* The directory part of path, into buf. */
static const char *dir_of(const char *path, char *buf, size_t len)
{
  const char *slash = strrchr(path, '/');
  if (!slash)
    return trw__fmt(buf, len, ".");
  if (slash == path)
    return trw__fmt(buf, len, "/");
  return trw__fmt(buf, len, "%.*s", (int)(slash - path), path);
}

/* Explains why opening o->path failed with err. */
static void refuse_errno(output *o, int err)
{
  struct stat st;
  char dir[PATH_MAX];
  if ((err == ENOENT || err == ELOOP) && lstat(o->path, &st) == 0 && S_ISLNK(st.st_mode) &&
      stat(o->path, &st) != 0)
    refuse(o, "is a symlink to a file that does not exist (torchrw does not create files "
              "through symlinks)");
  else if (err == ENOENT || err == ENOTDIR)
    refuse(o, "is in no such directory %s", dir_of(o->path, dir, sizeof dir));
  else if (err == EISDIR)
    refuse(o, "is a directory");
  else if (err == ENXIO && stat(o->path, &st) == 0 && S_ISFIFO(st.st_mode))
    refuse(o, "is a FIFO with no reader");
  else if ((err == EACCES || err == EPERM || err == EROFS) && access(o->path, F_OK) == 0)
    refuse(o, "is read-only (%s)", strerror(err));
  else
    refuse(o, "cannot be written: %s", strerror(err));
}

/* Opens o: see the top of the file.  Leaves state 1 or -1. */
static void open_output(output *o)
{
  const char *v = wanted(o);
  if (!v) {
    o->state = -1; /* not asked for: nothing, silently */
    return;
  }
  trw__fmt(o->path, sizeof o->path, "%s", v);
  o->pid = getpid();
  if (to_stderr(o, v)) {
    o->fd = 2;
    o->state = 1;
    return;
  }
  int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  /* What exists is what the user named: a symlink there was put there by
   * someone allowed to (/dev/stdout; the kernel's protected_symlinks
   * keeps others' out of sticky directories). */
  int fd = open(o->path, flags);
  if (fd < 0 && errno == ENOENT) {
    fd = open(o->path, flags | O_CREAT | O_EXCL, 0666);
    if (fd < 0 && errno == EEXIST) /* another process was first */
      fd = open(o->path, flags | O_NOFOLLOW);
  }
  if (fd < 0) {
    refuse_errno(o, errno);
    return;
  }
  o->fd = fd;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    refuse_errno(o, errno);
    return;
  }
  if (S_ISREG(st.st_mode) && (st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0) {
    /* root may write anyway; a user who made it read-only did not want it. */
    refuse(o, "is read-only");
    return;
  }
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
    refuse(o, "%s", kind_of(st.st_mode));
    return;
  }
  for (int std = 1; std <= 2; std++) {
    struct stat ss;
    if (fstat(std, &ss) == 0 && ss.st_dev == st.st_dev && ss.st_ino == st.st_ino &&
        !S_ISCHR(st.st_mode)) {
      int dup = fcntl(std, F_DUPFD_CLOEXEC, 3);
      if (dup >= 0) {
        close(fd);
        o->fd = dup;
        o->state = 1;
        return;
      }
    }
  }
  /* Writes may wait for a slow reader; only opening must not. */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  o->state = 1;
}

/* o open in this process (a fork child reopens: locks are per open file). */
static int ready(output *o)
{
  if (o->state == 1 && o->pid != getpid()) {
    close_output(o);
    o->state = 0;
  }
  if (o->state == 0)
    open_output(o);
  return o->state == 1;
}

int trw__output_wanted(trw__output_id id)
{
  output *o = get(id);
  pthread_mutex_lock(&lock);
  int yes = o && (o->state == 1 || (o->state == 0 && wanted(o)));
  pthread_mutex_unlock(&lock);
  return yes;
}

int trw__output_open(trw__output_id id)
{
  output *o = get(id);
  if (!o)
    return TRW_EINVAL;
  pthread_mutex_lock(&lock);
  int ok = ready(o);
  pthread_mutex_unlock(&lock);
  return ok ? 0 : TRW_EIO;
}

int trw__output_write(trw__output_id id, const char *buf, size_t len)
{
  output *o = get(id);
  if (!o || !buf)
    return TRW_EINVAL;
  pthread_mutex_lock(&lock);
  int rc = TRW_EIO;
  if (ready(o)) {
    /* One record whole: other processes append between, never inside. */
    int locked = flock(o->fd, LOCK_EX) == 0;
    size_t done = 0;
    while (done < len) {
      ssize_t n = write(o->fd, buf + done, len - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      done += (size_t)n;
    }
    int err = errno;
    if (locked)
      flock(o->fd, LOCK_UN);
    if (done == len)
      rc = 0;
    else
      refuse(o, "could not be written: %s", strerror(err));
  }
  pthread_mutex_unlock(&lock);
  return rc;
}

FILE *trw__output_stream(trw__output_id id)
{
  output *o = get(id);
  if (!o)
    return NULL;
  pthread_mutex_lock(&lock);
  FILE *f = NULL;
  if (ready(o)) {
    if (o->fd == 2) {
      f = stderr;
    } else {
      if (!o->stream) {
        o->stream = fdopen(o->fd, "a");
        if (o->stream)
          setvbuf(o->stream, NULL, _IOLBF, 0); /* whole lines, appended */
      }
      f = o->stream;
    }
  }
  pthread_mutex_unlock(&lock);
  return f;
}

/* 1 when a and b name the same file, or will once it is created. */
static int same_file(const char *a, const char *b)
{
  struct stat sa, sb;
  int ha = stat(a, &sa) == 0, hb = stat(b, &sb) == 0;
  if (ha && hb)
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  if (ha || hb)
    return 0;
  char da[PATH_MAX], db[PATH_MAX], ra[PATH_MAX], rb[PATH_MAX];
  const char *ba = strrchr(a, '/'), *bb = strrchr(b, '/');
  ba = ba ? ba + 1 : a;
  bb = bb ? bb + 1 : b;
  return strcmp(ba, bb) == 0 && realpath(dir_of(a, da, sizeof da), ra) &&
         realpath(dir_of(b, db, sizeof db), rb) && strcmp(ra, rb) == 0;
}

void trw__output_guard(const char *target, const char *whose)
{
  if (!target || !*target)
    return;
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
    output *o = &outputs[i];
    if (o->state == -1)
      continue;
    const char *v = o->state == 1 ? o->path : wanted(o);
    if (!v || to_stderr(o, v) || !same_file(v, target))
      continue;
    trw__fmt(o->path, sizeof o->path, "%s", v);
    refuse(o, "is %s (%s): torchrw never writes into it", whose ? whose : "an output file",
           target);
  }
  pthread_mutex_unlock(&lock);
}

void trw__output_reset(void)
{
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
    close_output(&outputs[i]);
    outputs[i].state = 0;
    outputs[i].path[0] = '\0';
  }
  pthread_mutex_unlock(&lock);
}
