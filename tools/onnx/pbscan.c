/*
 * pbscan.c - measures how deeply a serialized protobuf message nests
 * without unpacking it.
 *
 * protobuf-c unpacks nested messages by recursion and sets no depth limit.
 * ONNX graphs nest (a node's attribute holds a graph whose nodes hold
 * attributes...), so a small hostile file can nest thousands of levels and
 * overflow the stack.  This scan walks the wire format with the generated
 * descriptors, recursing only into fields that are messages, and refuses
 * anything deeper than the limit before the unpacker sees it.
 */
#include "trwonnx.h"

/* Reads a varint at *pos; returns 0, or -1 when it runs off the end or is
 * longer than 10 bytes. */
static int read_varint(const uint8_t *buf, size_t len, size_t *pos,
                       uint64_t *value)
{
  uint64_t v = 0;
  unsigned shift = 0;

  while (*pos < len && shift < 70) {
    uint8_t b = buf[(*pos)++];
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *value = v;
      return 0;
    }
    shift += 7;
  }
  return -1;
}

/* Returns 0 (fine or malformed) or TRW_ERANGE (too deep). */
static int scan(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                size_t len, int depth, int maxdepth)
{
  size_t pos = 0;

  if (depth > maxdepth)
    return TRW_ERANGE;
  while (pos < len) {
    uint64_t key, n;
    unsigned wire;

    if (read_varint(buf, len, &pos, &key) != 0)
      return 0;
    wire = (unsigned)(key & 7);
    switch (wire) {
    case 0:
      if (read_varint(buf, len, &pos, &n) != 0)
        return 0;
      break;
    case 1:
      if (len - pos < 8)
        return 0;
      pos += 8;
      break;
    case 5:
      if (len - pos < 4)
        return 0;
      pos += 4;
      break;
    case 2: {
      const ProtobufCFieldDescriptor *field = NULL;

      if (read_varint(buf, len, &pos, &n) != 0 || n > len - pos)
        return 0;
      if (desc != NULL && (key >> 3) <= UINT32_MAX)
        field = protobuf_c_message_descriptor_get_field(desc,
                                                        (unsigned)(key >> 3));
      if (field != NULL && field->type == PROTOBUF_C_TYPE_MESSAGE) {
        int rc = scan(field->descriptor, buf + pos, (size_t)n, depth + 1,
                      maxdepth);
        if (rc != 0)
          return rc;
      }
      pos += (size_t)n;
      break;
    }
    default:
      /* Groups are not used by ONNX; the unpacker will reject them. */
      return 0;
    }
  }
  return 0;
}

int trw__pb_depth_ok(const ProtobufCMessageDescriptor *desc,
                     const uint8_t *buf, size_t len, int maxdepth)
{
  if (buf == NULL)
    return 0;
  return scan(desc, buf, len, 0, maxdepth);
}
