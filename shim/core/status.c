/*
 * status.c - what `torchrw run` shows on its status line: the phase of
 * the export, the operators traced and the rewrites fired.
 *
 * `torchrw run` passes a channel only when its stderr is a terminal:
 * TORCHRW_STATUS_FD=FD:INODE names one end of an AF_UNIX datagram
 * socketpair it made.  The inode proves the descriptor is that socket: a
 * process that inherited the variable but not the descriptor (the channel
 * is close-on-exec here) may hold something else at FD, and is left
 * alone.  Without the variable, or with one that does not check out,
 * nothing here does anything; the counters cost one test per operator.
 *
 * Sending never blocks, never raises SIGPIPE and never fails the export:
 * a record that does not fit is dropped (the next carries the totals),
 * and errno is left as it was.  Counter updates go out at most every
 * 100 ms; a phase change goes out at once (a few per export).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "status_wire.h"

#define MIN_INTERVAL_NS 100000000ull /* counter updates: 10 per second at most */

static int channel = -1;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static uint32_t phase;
static uint64_t ops, fired, exports, last_sent_ns;

/* The descriptor TORCHRW_STATUS_FD names, when it is torchrw run's
 * status socket; -1 otherwise. */
static int open_channel(const char *v, char *why, size_t whylen)
{
  char *end = NULL;
  errno = 0;
  long fd = strtol(v, &end, 10);
  if (errno || end == v || *end != ':' || fd < 0 || fd > 1 << 20) {
    trw__fmt(why, whylen, "not FD:INODE");
    return -1;
  }
  const char *ino_text = end + 1;
  unsigned long long ino = strtoull(ino_text, &end, 10);
  if (errno || end == ino_text || *end) {
    trw__fmt(why, whylen, "not FD:INODE");
    return -1;
  }
  struct stat st;
  int type = 0;
  socklen_t len = sizeof type;
  if (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode) || (unsigned long long)st.st_ino != ino ||
      getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_DGRAM) {
    trw__fmt(why, whylen, "descriptor %ld is not that socket", fd);
    return -1;
  }
  /* The channel is this process's (and its fork children's), not that of
   * the programs it runs. */
  int flags = fcntl((int)fd, F_GETFD);
  if (flags < 0 || fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC) != 0) {
    trw__fmt(why, whylen, "cannot mark descriptor %ld close-on-exec: %s", fd, strerror(errno));
    return -1;
  }
  return (int)fd;
}

static void init(void)
{
  int saved = errno;
  const char *v = getenv("TORCHRW_STATUS_FD");
  if (v && *v) {
    char why[128];
    channel = open_channel(v, why, sizeof why);
    if (channel < 0)
      trw__log(TRW__LOG_DEBUG, "TORCHRW_STATUS_FD=%s: %s; no status is sent", v, why);
  }
  errno = saved;
}

int trw__status_on(void)
{
  pthread_once(&once, init);
  return channel >= 0;
}

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void send_now(uint64_t now)
{
  int saved = errno;
  trw__status_record r = {
      .magic = TRW__STATUS_MAGIC,
      .version = TRW__STATUS_VERSION,
      .pid = (uint32_t)getpid(),
      .phase = __atomic_load_n(&phase, __ATOMIC_RELAXED),
      .ops = __atomic_load_n(&ops, __ATOMIC_RELAXED),
      .fired = __atomic_load_n(&fired, __ATOMIC_RELAXED),
      .exports = __atomic_load_n(&exports, __ATOMIC_RELAXED),
  };
  __atomic_store_n(&last_sent_ns, now, __ATOMIC_RELAXED);
  /* A full queue (EAGAIN) or a reader gone (ECONNREFUSED, EPIPE): dropped. */
  (void)send(channel, &r, sizeof r, MSG_DONTWAIT | MSG_NOSIGNAL);
  errno = saved;
}

static void send_if_due(void)
{
  uint64_t now = now_ns();
  if (now - __atomic_load_n(&last_sent_ns, __ATOMIC_RELAXED) >= MIN_INTERVAL_NS)
    send_now(now);
}

void trw__status_phase(int p)
{
  if (!trw__status_on())
    return;
  uint32_t was = __atomic_exchange_n(&phase, (uint32_t)p, __ATOMIC_RELAXED);
  if (was == (uint32_t)p)
    return;
  if (was == TRW__PHASE_RUNNING && p != TRW__PHASE_RUNNING)
    __atomic_add_fetch(&exports, 1, __ATOMIC_RELAXED);
  send_now(now_ns());
}

int trw__status_get_phase(void) { return (int)__atomic_load_n(&phase, __ATOMIC_RELAXED); }

void trw__status_op(void)
{
  if (channel < 0)
    return;
  /* The clock is read every 64 operators only. */
  if ((__atomic_add_fetch(&ops, 1, __ATOMIC_RELAXED) & 63) == 0)
    send_if_due();
}

void trw__status_fired(void)
{
  if (channel < 0)
    return;
  __atomic_add_fetch(&fired, 1, __ATOMIC_RELAXED);
  send_if_due();
}
