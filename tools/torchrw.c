/*
 * torchrw.c - the torchrw command: a table of subcommands and main().
 */
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static int cmd_help(int argc, char **argv);

/* One line per subcommand; the help text is a single line. */
static const struct subcommand {
  const char *name;
  trw__cmd_fn fn;
  const char *help;
} commands[] = {
  {"inspect", trw__cmd_inspect,
   "summarise an ONNX file: opsets, inputs, outputs, operators, weights"},
  {"check", trw__cmd_check,
   "list what a backend cannot run in an ONNX file (--backend B)"},
  {"diff", trw__cmd_diff,
   "show what changed between two ONNX exports"},
#ifdef TRW_HAVE_CMD_RUN
  {"run", trw__cmd_run, "run an export script with torchrw preloaded"},
#endif
#ifdef TRW_HAVE_CMD_LIST
  {"list", trw__cmd_list, "list the registered rewriters"},
#endif
#if defined(TRW_HAVE_CMD_RUN) && defined(TRW_HAVE_CMD_LIST)
  {"explain", trw__cmd_explain,
   "export plain and under torchrw; each violation before and after, with lines"},
#endif
  {"help", cmd_help, "show help for torchrw or for one subcommand"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
  fprintf(out,
          "usage: torchrw COMMAND [ARGS...]\n"
          "\n"
          "torchrw rewrites PyTorch operators while a model is exported to "
          "ONNX, and\nlooks at the exported files.\n\ncommands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].help);
  fprintf(out, "\n'torchrw COMMAND --help' describes one command.\n"
               "Exit status: 0 success, 1 a finding (check: violations, "
               "diff: differences),\n2 bad usage or bad input.\n");
}

static const struct subcommand *find(const char *name)
{
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

static int cmd_help(int argc, char **argv)
{
  const struct subcommand *c;
  char help_flag[] = "--help";
  char *args[3];

  if (argc < 2 || strcmp(argv[1], "help") == 0 ||
      strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return TRW__EXIT_OK;
  }
  if (argc > 2) {
    fprintf(stderr, "torchrw help: takes at most one COMMAND\n");
    return TRW__EXIT_BAD;
  }
  c = find(argv[1]);
  if (c == NULL) {
    fprintf(stderr, "torchrw help: unknown command '%s'\n", argv[1]);
    return TRW__EXIT_BAD;
  }
  args[0] = argv[1];
  args[1] = help_flag;
  args[2] = NULL;
  return c->fn(2, args);
}

int main(int argc, char **argv)
{
  const struct subcommand *c;

  if (argc < 2) {
    usage(stderr);
    return TRW__EXIT_BAD;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    usage(stdout);
    return TRW__EXIT_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("torchrw %d.%d\n", TRW_VERSION_MAJOR, TRW_VERSION_MINOR);
    return TRW__EXIT_OK;
  }
  c = find(argv[1]);
  if (c == NULL) {
    fprintf(stderr, "torchrw: unknown %s '%s' (commands:",
            argv[1][0] == '-' ? "option" : "command", argv[1]);
    for (size_t i = 0; i < NCOMMANDS; i++)
      fprintf(stderr, " %s", commands[i].name);
    fprintf(stderr, "; options: --help --version)\n");
    return TRW__EXIT_BAD;
  }
  return c->fn(argc - 1, argv + 1);
}
