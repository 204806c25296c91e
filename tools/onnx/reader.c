/*
 * reader.c - loads .onnx files with protobuf-c and says clearly what is
 * wrong with the ones it cannot load.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trwonnx.h"

static void say(char *err, size_t errlen, const char *fmt, ...)
    TRW_PRINTF(3, 4);

static void say(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/*
 * Whether byte b could start a serialized ModelProto: a tag whose field
 * number is one ModelProto defines, with that field's wire type.  Used only
 * to tell "not ONNX at all" from "an ONNX file that is damaged".
 */
static int looks_like_model_tag(uint8_t b)
{
  unsigned field = b >> 3, wire = b & 7;

  if (b & 0x80)
    return 0; /* Field numbers above 15 take two bytes; ir_version is 1. */
  switch (field) {
  case 1: /* ir_version */
  case 5: /* model_version */
    return wire == 0;
  case 2: case 3: case 4: case 6: case 7: case 8: case 14:
    return wire == 2;
  default:
    return 0;
  }
}

static char *dup_dir(const char *path)
{
  const char *slash = strrchr(path, '/');
  char *dir;

  if (slash == NULL)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  dir = malloc((size_t)(slash - path) + 1);
  if (dir == NULL)
    return NULL;
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = '\0';
  return dir;
}

/* Checks what protobuf cannot: the fields ONNX requires. */
static int check_model(const Onnx__ModelProto *m, char *err, size_t errlen)
{
  if (m->graph == NULL && !m->has_ir_version && m->n_opset_import == 0) {
    say(err, errlen, "not an ONNX model (no IR version, no graph)");
    return TRW_ETYPE;
  }
  if (m->graph == NULL) {
    say(err, errlen, "not a complete ONNX model: it has no graph "
                     "(truncated?)");
    return TRW_ETYPE;
  }
  /* ONNX writes opset_import after the graph, so a file cut between the two
   * still unpacks; IR version 3 and later require opset_import. */
  if (m->n_opset_import == 0 && (!m->has_ir_version || m->ir_version >= 3)) {
    say(err, errlen, "not a complete ONNX model: it imports no opset "
                     "(truncated?)");
    return TRW_ETYPE;
  }
  return 0;
}

int trw__onnx_load_buffer(const uint8_t *buf, size_t len, const char *path,
                          trw__onnx_model **out, char *err, size_t errlen)
{
  trw__onnx_model *model;
  Onnx__ModelProto *proto;
  int rc;

  if (out == NULL || path == NULL || (buf == NULL && len > 0)) {
    say(err, errlen, "invalid argument");
    return TRW_EINVAL;
  }
  *out = NULL;
  if (len == 0) {
    say(err, errlen, "empty file, not an ONNX model");
    return TRW_ETYPE;
  }
  if (trw__pb_depth_ok(&onnx__model_proto__descriptor, buf, len,
                       TRW__ONNX_MAX_DEPTH) != 0) {
    say(err, errlen, "corrupted ONNX model: messages nested more than %d "
                     "deep", TRW__ONNX_MAX_DEPTH);
    return TRW_ETYPE;
  }
  proto = onnx__model_proto__unpack(NULL, len, buf);
  if (proto == NULL) {
    if (looks_like_model_tag(buf[0]))
      say(err, errlen, "truncated or corrupted ONNX model (protobuf "
                       "decoding failed)");
    else
      say(err, errlen, "not an ONNX model (not a protobuf ModelProto)");
    return TRW_ETYPE;
  }
  rc = check_model(proto, err, errlen);
  if (rc != 0) {
    onnx__model_proto__free_unpacked(proto, NULL);
    return rc;
  }
  model = calloc(1, sizeof(*model));
  if (model == NULL)
    goto nomem;
  model->proto = proto;
  model->file_bytes = len;
  model->path = strdup(path);
  model->dir = dup_dir(path);
  if (model->path == NULL || model->dir == NULL)
    goto nomem;
  *out = model;
  return 0;

nomem:
  if (model != NULL) {
    free(model->path);
    free(model->dir);
    free(model);
  }
  onnx__model_proto__free_unpacked(proto, NULL);
  say(err, errlen, "out of memory");
  return TRW_ENOMEM;
}

int trw__onnx_load(const char *path, trw__onnx_model **out, char *err,
                   size_t errlen)
{
  struct stat st;
  void *map;
  int fd, rc;

  if (path == NULL || out == NULL) {
    say(err, errlen, "invalid argument");
    return TRW_EINVAL;
  }
  *out = NULL;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    say(err, errlen, "%s", e == ENOENT ? "no such file" : strerror(e));
    return e == ENOENT ? TRW_ENOTFOUND : TRW_EIO;
  }
  if (fstat(fd, &st) != 0) {
    say(err, errlen, "cannot stat: %s", strerror(errno));
    close(fd);
    return TRW_EIO;
  }
  if (S_ISDIR(st.st_mode)) {
    say(err, errlen, "is a directory, not an ONNX file");
    close(fd);
    return TRW_EIO;
  }
  if (!S_ISREG(st.st_mode)) {
    say(err, errlen, "not a regular file");
    close(fd);
    return TRW_EIO;
  }
  if (st.st_size == 0) {
    close(fd);
    say(err, errlen, "empty file, not an ONNX model");
    return TRW_ETYPE;
  }
  if ((uint64_t)st.st_size > SIZE_MAX) {
    close(fd);
    say(err, errlen, "file too large for this machine");
    return TRW_ENOMEM;
  }
  /* Mapping avoids holding a second copy: protobuf-c copies what it keeps. */
  map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    say(err, errlen, "cannot map the file: %s", strerror(errno));
    return TRW_EIO;
  }
  rc = trw__onnx_load_buffer(map, (size_t)st.st_size, path, out, err,
                             errlen);
  munmap(map, (size_t)st.st_size);
  return rc;
}

void trw__onnx_free(trw__onnx_model *model)
{
  if (model == NULL)
    return;
  if (model->proto != NULL)
    onnx__model_proto__free_unpacked(model->proto, NULL);
  free(model->path);
  free(model->dir);
  free(model);
}
