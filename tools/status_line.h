/*
 * status_line.h - the status line of `torchrw run`.
 *
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
#ifndef TRW_STATUS_LINE_H
#define TRW_STATUS_LINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "../shim/core/status_wire.h"

#define TRW__STATUS_PROCS 64

typedef struct {
  int sock;    /* torchrw's end, -1 when the line is off */
  int peer;    /* CMD's end, closed after fork */
  unsigned long long peer_ino;
  int rows; /* the terminal's rows when the region was set; 0: not set */
  uint32_t last_pid; /* the phase shown is the latest sender's */
  struct {
    uint32_t pid;
    trw__status_record r;
  } procs[TRW__STATUS_PROCS]; /* the latest record of each process that sent */
  size_t nprocs;
} trw__status_line;

/* Whether the line is wanted (and stderr a terminal), and its channel
 * made: 0, or -1 (off: st->sock is -1). */
int trw__status_open(trw__status_line *st, int wanted);
/* In the child, before exec: CMD's end of the channel, or no variable. */
void trw__status_child(const trw__status_line *st);
/* Waits for pid, drawing the line; leaves it erased. */
void trw__status_wait(trw__status_line *st, pid_t pid, int *status, const struct timespec *start);
void trw__status_close(trw__status_line *st);

#endif /* TRW_STATUS_LINE_H */
