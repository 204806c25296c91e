/*
 * types.c - names and sizes of ONNX data types, shapes and domains.
 */
#include <stdio.h>
#include <string.h>

#include "trwonnx.h"

/* Indexed by TensorProto.DataType.  The numbers after bfloat16 come from
 * newer onnx.proto files than some installs have, so they are spelled as
 * numbers rather than generated enum names. */
static const struct {
  const char *name;
  size_t size;
} dtypes[] = {
  [0] = {"undefined", 0}, [1] = {"float", 4},     [2] = {"uint8", 1},
  [3] = {"int8", 1},      [4] = {"uint16", 2},    [5] = {"int16", 2},
  [6] = {"int32", 4},     [7] = {"int64", 8},     [8] = {"string", 0},
  [9] = {"bool", 1},      [10] = {"float16", 2},  [11] = {"double", 8},
  [12] = {"uint32", 4},   [13] = {"uint64", 8},   [14] = {"complex64", 8},
  [15] = {"complex128", 16}, [16] = {"bfloat16", 2},
  [17] = {"float8e4m3fn", 1}, [18] = {"float8e4m3fnuz", 1},
  [19] = {"float8e5m2", 1},   [20] = {"float8e5m2fnuz", 1},
  [21] = {"uint4", 0},        [22] = {"int4", 0},
};
#define NDTYPES ((int32_t)(sizeof(dtypes) / sizeof(dtypes[0])))

const char *trw__onnx_dtype_name(int32_t dtype)
{
  if (dtype <= 0 || dtype >= NDTYPES)
    return "?";
  return dtypes[dtype].name;
}

int32_t trw__onnx_dtype_from_name(const char *name)
{
  if (name == NULL)
    return -1;
  for (int32_t i = 1; i < NDTYPES; i++)
    if (strcmp(dtypes[i].name, name) == 0)
      return i;
  return -1;
}

size_t trw__onnx_dtype_size(int32_t dtype)
{
  if (dtype <= 0 || dtype >= NDTYPES)
    return 0;
  return dtypes[dtype].size;
}

int trw__onnx_tensor_bytes(const Onnx__TensorProto *t, uint64_t *bytes)
{
  uint64_t n = 1, total = 0;
  size_t esize;

  if (t == NULL || bytes == NULL)
    return TRW_EINVAL;
  esize = trw__onnx_dtype_size(t->has_data_type ? t->data_type : 0);
  if (esize == 0) {
    /* Strings and unknown types: what the file holds. */
    if (t->has_raw_data)
      total = t->raw_data.len;
    for (size_t i = 0; i < t->n_string_data; i++)
      total += t->string_data[i].len;
    *bytes = total;
    return 0;
  }
  for (size_t i = 0; i < t->n_dims; i++) {
    if (t->dims[i] < 0)
      return TRW_ERANGE;
    if (__builtin_mul_overflow(n, (uint64_t)t->dims[i], &n))
      return TRW_ERANGE;
  }
  if (__builtin_mul_overflow(n, (uint64_t)esize, &n))
    return TRW_ERANGE;
  *bytes = n;
  return 0;
}

int32_t trw__onnx_vi_dtype(const Onnx__ValueInfoProto *vi)
{
  if (vi == NULL || vi->type == NULL ||
      vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
      vi->type->tensor_type == NULL || !vi->type->tensor_type->has_elem_type)
    return 0;
  return vi->type->tensor_type->elem_type;
}

const Onnx__TensorShapeProto *trw__onnx_vi_shape(const Onnx__ValueInfoProto *vi)
{
  if (vi == NULL || vi->type == NULL ||
      vi->type->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
      vi->type->tensor_type == NULL)
    return NULL;
  return vi->type->tensor_type->shape;
}

int trw__onnx_shape_static(const Onnx__TensorShapeProto *shape)
{
  if (shape == NULL)
    return 0;
  for (size_t i = 0; i < shape->n_dim; i++)
    if (shape->dim[i] == NULL ||
        shape->dim[i]->value_case !=
            ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
      return 0;
  return 1;
}

char *trw__onnx_shape_str(const Onnx__TensorShapeProto *shape, char *buf,
                          size_t buflen)
{
  size_t used = 0;

  if (buf == NULL || buflen == 0)
    return buf;
  if (shape == NULL) {
    snprintf(buf, buflen, "?");
    return buf;
  }
  buf[0] = '\0';
  for (size_t i = 0; i <= shape->n_dim && used < buflen; i++) {
    const Onnx__TensorShapeProto__Dimension *d =
        i < shape->n_dim ? shape->dim[i] : NULL;
    const char *sep = i == 0 ? "[" : ",";
    int w;

    if (i == shape->n_dim)
      w = snprintf(buf + used, buflen - used, "%s]", i == 0 ? "[" : "");
    else if (d != NULL &&
             d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
      w = snprintf(buf + used, buflen - used, "%s%lld", sep,
                   (long long)d->dim_value);
    else if (d != NULL &&
             d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
             d->dim_param != NULL && d->dim_param[0] != '\0')
      w = snprintf(buf + used, buflen - used, "%s%s", sep, d->dim_param);
    else
      w = snprintf(buf + used, buflen - used, "%s?", sep);
    if (w < 0)
      break;
    used += (size_t)w;
  }
  return buf;
}

int trw__onnx_domain_standard(const char *domain)
{
  return domain == NULL || domain[0] == '\0' ||
         strcmp(domain, "ai.onnx") == 0 || strcmp(domain, "ai.onnx.ml") == 0;
}

const char *trw__onnx_domain_name(const char *domain)
{
  return domain == NULL || domain[0] == '\0' ? "ai.onnx" : domain;
}

int64_t trw__onnx_opset(const Onnx__ModelProto *model, const char *domain)
{
  const char *want = trw__onnx_domain_name(domain);

  if (model == NULL)
    return -1;
  for (size_t i = 0; i < model->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *op = model->opset_import[i];
    if (op != NULL && strcmp(trw__onnx_domain_name(op->domain), want) == 0)
      return op->has_version ? op->version : -1;
  }
  return -1;
}
