/* crash_plugin.c - a plugin whose constructor crashes: the process dies,
 * but stderr names the plugin first. */
#include <signal.h>

#include "torchrw.h"

__attribute__((constructor)) static void crash(void)
{
  raise(SIGSEGV);
}
