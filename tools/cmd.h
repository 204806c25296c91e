/*
 * cmd.h - the subcommands of the torchrw command and what they share.
 *
 * A subcommand is a function called with the arguments that follow
 * "torchrw", its own name first (argv[0] is "inspect" for
 * "torchrw inspect m.onnx").  It returns the process exit status: 0 for
 * success, 1 for a negative finding (check found violations, diff found
 * differences), 2 for bad usage or bad input.  Subcommands never call
 * exit(); main() returns what they return.
 *
 * Adding a subcommand: write tools/cmd_<name>.c with a function of this
 * shape, declare it here, and add one line to the table in torchrw.c.
 * cmd_run.c and cmd_list.c are picked up by tools/CMakeLists.txt when they
 * exist, which defines TRW_HAVE_CMD_RUN / TRW_HAVE_CMD_LIST.
 */
#ifndef TRW_CMD_H
#define TRW_CMD_H

#include <stddef.h>

#include "trwonnx.h"

#define TRW__EXIT_OK 0
#define TRW__EXIT_FOUND 1
#define TRW__EXIT_BAD 2

typedef int (*trw__cmd_fn)(int argc, char **argv);

int trw__cmd_inspect(int argc, char **argv);
int trw__cmd_check(int argc, char **argv);
int trw__cmd_diff(int argc, char **argv);
int trw__cmd_run(int argc, char **argv);  /* tools/cmd_run.c */
int trw__cmd_list(int argc, char **argv); /* tools/cmd_list.c */
int trw__cmd_explain(int argc, char **argv); /* tools/cmd_explain.c, with run and list */

/* Prints "torchrw: FILE: message" on stderr. */
void trw__cmd_error(const char *file, const char *fmt, ...)
    TRW_PRINTF(2, 3);

/*
 * Loads the model at path and checks its external data references.  On
 * success returns 0 and *out is a model the caller frees with
 * trw__onnx_free(); *refs and *nrefs (when refs is not NULL) are its
 * external data references, freed with free().  On failure prints one
 * "torchrw: FILE: what is wrong" line and returns TRW__EXIT_BAD.
 */
int trw__cmd_load(const char *path, trw__onnx_model **out,
                  trw__onnx_extref **refs, size_t *nrefs);

/* Option parsing shared by the subcommands. */
typedef struct trw__opt {
  const char *name;  /* "--json" */
  int takes_value;   /* 1 for "--backend B" / "--backend=B" */
  const char **value; /* where a value goes */
  int *flag;         /* set to 1 when a flag is given */
} trw__opt;

/*
 * Parses argv[1..] against opts (terminated by a NULL name).  "-h" and
 * "--help" set *help.  Arguments that are not options are collected in
 * pos (at most maxpos; more is an error); "--" ends the options.  Returns
 * 0, or prints an error naming the accepted options (cmd is the
 * subcommand's name) and returns TRW__EXIT_BAD.
 */
int trw__cmd_parse(const char *cmd, int argc, char **argv,
                   const trw__opt *opts, int *help, const char **pos,
                   int maxpos, int *npos);

/*
 * Runs argv[0] (a path, or a name looked up in PATH) with argv, its stdout
 * read into a NUL-terminated buffer the caller frees.  Returns the buffer
 * and sets *status to the exit status (128 + the signal for a process that
 * was killed); NULL when the process could not be started or read (after
 * "torchrw CMD: cannot run ..." on stderr from the child).
 */
char *trw__cmd_capture(const char *cmd, char *const argv[], int *status);

/* Formats a byte count as "12.3 MiB" into buf; returns buf. */
char *trw__cmd_bytes(unsigned long long bytes, char *buf, size_t buflen);

#endif /* TRW_CMD_H */
