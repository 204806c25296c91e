/* empty_plugin.c - a plugin that registers nothing: a warning, and the
 * export goes on. */
#include "torchrw.h"

int empty_plugin_loaded = 1;
