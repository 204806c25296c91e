/* exit_plugin.c - a plugin whose constructor exits the process: stderr
 * names the plugin before it goes. */
#include <stdlib.h>

#include "torchrw.h"

__attribute__((constructor)) static void leave(void)
{
  exit(3);
}
