/* What the C GPU tests share: the skip code, a CUDA call check, bf16 and f16 on the host, upload of
 * float64 host values into a device buffer of an element type and back, tensor views. */
#ifndef BARACUDA_TEST_GPU_SUPPORT_H
#define BARACUDA_TEST_GPU_SUPPORT_H

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <baracuda/baracuda.h>

/* ctest reports a test that exits with this code as skipped (SKIP_RETURN_CODE). */
enum { kSkipExitCode = 77 };

#define CUDA_OK(call)                                                                            \
  do {                                                                                           \
    const cudaError_t error_ = (call);                                                           \
    if (error_ != cudaSuccess) {                                                                 \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(error_)); \
      exit(EXIT_FAILURE);                                                                        \
    }                                                                                            \
  } while (0)

enum { kBf16Shift = 16, kBf16RoundingBias = 0x7FFF };

static uint16_t to_bf16(float value) { /* round to nearest even */
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  bits += kBf16RoundingBias + ((bits >> kBf16Shift) & 1u);
  return (uint16_t)(bits >> kBf16Shift);
}

static double from_bf16(uint16_t value) {
  const uint32_t bits = (uint32_t)value << kBf16Shift;
  float result;
  memcpy(&result, &bits, sizeof result);
  return result;
}

/* IEEE binary16: 5 exponent bits of bias 15, 10 mantissa bits. */
enum {
  kF16SignBit = 0x8000,
  kF16ExponentMask = 0x1F,
  kF16MantissaBits = 10,
  kF16MantissaMask = 0x3FF,
  kF16Infinity = 0x7C00,
  kF16QuietNan = 0x7E00,
  kF16Bias = 15,
  kF32Bias = 127,
  kF32MantissaBits = 23,
};

static uint16_t to_f16(float value) { /* round to nearest even, subnormals and overflow too */
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  const uint16_t sign = (uint16_t)((bits >> kBf16Shift) & kF16SignBit);
  const float magnitude = fabsf(value);
  if (isnan(value)) return sign | kF16QuietNan;
  if (magnitude >= 65520.0f) return sign | kF16Infinity; /* rounds past the largest, 65504 */
  if (magnitude < ldexpf(1.0f, 1 - kF16Bias)) {          /* subnormal: multiples of 2^-24 */
    return sign | (uint16_t)nearbyintf(ldexpf(magnitude, kF16Bias - 1 + kF16MantissaBits));
  }
  const int drop = kF32MantissaBits - kF16MantissaBits;
  uint32_t rebiased = (bits & 0x7FFFFFFFu) - ((uint32_t)(kF32Bias - kF16Bias) << kF32MantissaBits);
  rebiased += ((1u << (drop - 1)) - 1u) + ((rebiased >> drop) & 1u);
  return sign | (uint16_t)(rebiased >> drop);
}

static double from_f16(uint16_t value) {
  const int exponent = (value >> kF16MantissaBits) & kF16ExponentMask;
  const int mantissa = value & kF16MantissaMask;
  double magnitude;
  if (exponent == kF16ExponentMask) {
    magnitude = mantissa != 0 ? NAN : INFINITY;
  } else if (exponent == 0) {
    magnitude = ldexp(mantissa, 1 - kF16Bias - kF16MantissaBits);
  } else {
    magnitude = ldexp(mantissa + (1 << kF16MantissaBits), exponent - kF16Bias - kF16MantissaBits);
  }
  return (value & kF16SignBit) != 0 ? -magnitude : magnitude;
}

/* A 16-bit element's bits of a value, and back. */
static uint16_t to_16_bits(baracuda_element element, float value) {
  return element == BARACUDA_ELEMENT_F16 ? to_f16(value) : to_bf16(value);
}

static double from_16_bits(baracuda_element element, uint16_t value) {
  return element == BARACUDA_ELEMENT_F16 ? from_f16(value) : from_bf16(value);
}

static size_t element_bytes(baracuda_element element) {
  return baracuda_element_size(element);
}

/* Rounds values to the element in place (so that the host copy is what the device holds) and
 * uploads them; the device buffer has at least one byte. */
static void* upload(double* values, int64_t count, baracuda_element element) {
  const size_t bytes = (size_t)count * element_bytes(element);
  void* host = malloc(bytes > 0 ? bytes : 1);
  for (int64_t n = 0; n < count; ++n) {
    if (element == BARACUDA_ELEMENT_F64) {
      ((double*)host)[n] = values[n];
    } else if (element == BARACUDA_ELEMENT_F32) {
      ((float*)host)[n] = (float)values[n];
      values[n] = ((float*)host)[n];
    } else {
      ((uint16_t*)host)[n] = to_16_bits(element, (float)values[n]);
      values[n] = from_16_bits(element, ((uint16_t*)host)[n]);
    }
  }
  void* device = NULL;
  CUDA_OK(cudaMalloc(&device, bytes > 0 ? bytes : 1));
  CUDA_OK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
  free(host);
  return device;
}

/* Copies count elements back to the host as float64 into out. */
static void download(const void* device, baracuda_element element, int64_t count, double* out) {
  const size_t bytes = (size_t)count * element_bytes(element);
  void* host = malloc(bytes > 0 ? bytes : 1);
  CUDA_OK(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
  for (int64_t n = 0; n < count; ++n) {
    if (element == BARACUDA_ELEMENT_F64)
      out[n] = ((double*)host)[n];
    else if (element == BARACUDA_ELEMENT_F32)
      out[n] = ((float*)host)[n];
    else
      out[n] = from_16_bits(element, ((uint16_t*)host)[n]);
  }
  free(host);
}

/* A baracuda_tensor of the given rank, extents, strides and buffer size. */
static baracuda_tensor view(void* data, baracuda_element element, int rank, const int64_t* shape,
                            const int64_t* strides, int64_t buffer_elements) {
  baracuda_tensor tensor;
  memset(&tensor, 0, sizeof tensor);
  tensor.data = data;
  tensor.element = element;
  tensor.rank = rank;
  for (int axis = 0; axis < rank; ++axis) {
    tensor.shape[axis] = shape[axis];
    tensor.strides[axis] = strides[axis];
  }
  tensor.buffer_elements = buffer_elements;
  return tensor;
}

#endif /* BARACUDA_TEST_GPU_SUPPORT_H */
