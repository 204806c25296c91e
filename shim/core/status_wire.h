/*
 * status_wire.h - the records the runtime sends `torchrw run` for its
 * status line (TORCHRW_STATUS_FD).  Shared by shim/core/status.c (sender)
 * and tools/cmd_run.c (receiver); nothing else uses it.
 *
 * The channel is one end of an AF_UNIX SOCK_DGRAM socketpair that
 * `torchrw run` creates only when its stderr is a terminal.  A datagram
 * is one whole record, sent with MSG_DONTWAIT | MSG_NOSIGNAL: a full
 * queue drops it, a reader that went away raises no SIGPIPE, and the
 * descriptor's own flags are never changed.
 */
#ifndef TRW_STATUS_WIRE_H
#define TRW_STATUS_WIRE_H

#include <stdint.h>

#define TRW__STATUS_MAGIC 0x74727773u /* "trws" */
#define TRW__STATUS_VERSION 1u

/* What the process is doing, as shown. */
typedef enum trw__phase {
  TRW__PHASE_RUNNING = 0, /* no export under way */
  TRW__PHASE_TRACING = 1, /* TorchScript tracer, or torch.export's capture */
  TRW__PHASE_CONVERTING = 2, /* ONNX conversion: graph passes and symbolics, or
                              * torch.export's decompositions and translation */
  TRW__PHASE_WRITING = 3 /* serialising the model and writing the file */
} trw__phase;

/* One record: fixed size, host byte order (both ends are on one machine). */
typedef struct trw__status_record {
  uint32_t magic;   /* TRW__STATUS_MAGIC */
  uint32_t version; /* TRW__STATUS_VERSION */
  uint32_t pid;     /* the process that sent it */
  uint32_t phase;   /* trw__phase */
  uint64_t ops;     /* operators traced by this process so far */
  uint64_t fired;   /* rewrites fired in this process so far */
  uint64_t exports; /* exports begun by this process so far */
} trw__status_record;

#endif
