/*
 * runenv.h - what `torchrw run` and `torchrw list` share: where the
 * libraries are, and the TORCHRW_* options they both take.
 */
#ifndef TRW_RUNENV_H
#define TRW_RUNENV_H

#include <stddef.h>

/* The options that become TORCHRW_* variables.  Lists are joined the way
 * the variables take them (plugins with ':', the others with ','). */
typedef struct trw__runopts {
  const char *backend, *config, *report, *log;
  char *plugins, *python, *disable; /* owned, NULL when not given */
  int trace;
  const char *trace_file;
} trw__runopts;

/*
 * Handles one option of argv at *i for trw__runopts: --backend B,
 * --config F, --plugin P, --python M, --disable N, --report R, --log L,
 * --trace[=FILE] (each also as --opt=value).  Returns 1 when it took the
 * option (advancing *i past a separate value), 0 when argv[*i] is not one
 * of these, or -1 after printing an error (missing value).
 */
int trw__runopts_take(const char *cmd, trw__runopts *o, int argc, char **argv, int *i);
void trw__runopts_free(trw__runopts *o);

/* Sets the TORCHRW_* variables for o in this process's environment. */
void trw__runopts_export(const trw__runopts *o);

/*
 * Directory of the build's (or install's) libraries: the one holding
 * libtorchrw.so, found beside the torchrw executable (../lib) or through
 * TORCHRW_LIBDIR.  Writes into buf; returns 0, or -1 with a message
 * printed when it is not there.
 */
int trw__libdir(char *buf, size_t len);

/* Prepends dir to the PATH-like variable name (PYTHONPATH, LD_PRELOAD's
 * space-separated list when sep is ' '). */
void trw__env_prepend(const char *name, const char *dir, char sep);

/* The Python that has torch: $PYTHON, else /usr/bin/python3. */
const char *trw__python_exe(void);

#endif
