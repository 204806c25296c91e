/* errors.c - names and messages of torchrw's error codes (TRW_ERRNO_MAP). */
#include "core.h"

const char *trw_err_name(int code)
{
  switch (code) {
  case TRW_OK:
    return "TRW_OK";
#define NAME_CASE(name, msg)                                                   \
  case TRW_##name:                                                             \
    return "TRW_" #name;
    TRW_ERRNO_MAP(NAME_CASE)
#undef NAME_CASE
  default:
    return "TRW_EUNKNOWN";
  }
}

const char *trw_strerror(int code)
{
  switch (code) {
  case TRW_OK:
    return "success";
#define MSG_CASE(name, msg)                                                    \
  case TRW_##name:                                                             \
    return msg;
    TRW_ERRNO_MAP(MSG_CASE)
#undef MSG_CASE
  default:
    return "unknown error";
  }
}
