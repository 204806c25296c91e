/*
 * fuzz_config.c - libFuzzer target for the deployment config parser
 * (shim/core/config.c, linked from the trwcore sources).
 *
 * The two functions are declared here rather than taken from the core's
 * internal header, so this target depends on nothing but their prototypes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct trw_cfg trw_cfg;

int trw__cfg_parse(const char *buf, size_t len, const char *origin,
                   trw_cfg **out, char *err, size_t errlen);
void trw__cfg_free(trw_cfg *cfg);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  trw_cfg *cfg = NULL;
  char err[512];
  int rc;

  err[0] = '\0';
  rc = trw__cfg_parse((const char *)data, size, "fuzz.json", &cfg, err,
                      sizeof(err));
  if (rc == 0) {
    if (cfg == NULL)
      abort(); /* Success must hand back a config. */
    trw__cfg_free(cfg);
  } else {
    if (cfg != NULL || err[0] == '\0')
      abort(); /* Failure must leave nothing behind and say why. */
  }
  /* An error message must be a terminated string within the buffer. */
  if (memchr(err, '\0', sizeof(err)) == NULL)
    abort();
  return 0;
}
