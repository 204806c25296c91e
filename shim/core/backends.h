/*
 * backends.h - the one table of the backends torchrw knows: their names
 * (as mmdeploy spells them), what each engine reads, and the engine
 * versions torchrw has a capability table of.  Pure C.  names.c, the
 * runtime (hooks.c), registration and `torchrw check` all ask here.
 */
#ifndef TRW_BACKENDS_H
#define TRW_BACKENDS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TRW__MAX_VERSIONS 4

typedef struct trw__backend {
  const char *name;        /* "tensorrt": mmdeploy's spelling */
  const char *engine;      /* "TensorRT": for messages */
  int reads_external_data; /* reads ONNX weights stored outside the file */
  /* data/engines.py's name for the engine where it runs on a CPU without
   * a vendor's device ("onnxruntime"): `torchrw explain` runs files in
   * it; NULL for an engine that needs hardware (TensorRT: a GPU). */
  const char *runner;
  /* The engine versions torchrw has a capability table of, oldest first,
   * NULL-terminated; empty for a backend without a table.  A bare name
   * means the last (newest). */
  const char *versions[TRW__MAX_VERSIONS + 1];
} trw__backend;

/* The backends in a fixed order ("default" first), and how many. */
const trw__backend *trw__backends(size_t *count);
/* The entry of a backend name (no version; NULL and "" mean "default"),
 * or NULL. */
const trw__backend *trw__backend_find(const char *name);
/* The newest version of b with a table, or NULL when it has none. */
const char *trw__backend_newest(const trw__backend *b);
/* The known versions of b as "8.5, 8.6, 10.15" ("none" without any). */
const char *trw__backend_versions_text(const trw__backend *b, char *buf, size_t len);

/*
 * Parses a backend spec, "NAME" or "NAME:VERSION" (TORCHRW_BACKEND,
 * RewriterContext(backend=...), `torchrw check --backend`).  On success
 * *out is the backend and *version the known version named, the newest one
 * for a bare name (NULL for a backend that has no versions); both point
 * into the static table.  NULL and "" mean "default".  Returns 0, or
 * TRW_EBACKEND with one message in err naming the spec and what is known
 * when the name is unknown, the version is empty or not a dotted number
 * ("tensorrt:", "tensorrt:x"), names a version with no table, or the
 * backend has no versions.
 */
int trw__backend_parse(const char *spec, const trw__backend **out, const char **version,
                       char *err, size_t errlen);

/*
 * Parses the backend of a registration, "NAME" or "NAME:CONSTRAINT", where
 * CONSTRAINT is one or more comma-separated items, each a dotted version
 * with an optional comparison in front (`8.5`, `<8.6`, `>=10`, `>=8.6,<10`);
 * all must hold.  A bare version matches itself and the versions under it
 * ("10" matches 10.15).  *out is the backend; *constraint points at the
 * constraint inside spec, or is NULL when there is none.  Returns 0, or
 * TRW_EBACKEND with the reason in err (unknown name, malformed constraint,
 * a constraint on a backend without versions).
 */
int trw__backend_parse_registration(const char *spec, const trw__backend **out,
                                    const char **constraint, char *err, size_t errlen);

/* Nonzero when version satisfies constraint (NULL: every version).  A
 * NULL or empty version (a backend without versions) satisfies none. */
int trw__version_matches(const char *constraint, const char *version);

/* Orders two dotted versions by their numbers ("8.6" < "10.15"). */
int trw__version_cmp(const char *a, const char *b);

#ifdef __cplusplus
}
#endif
#endif
