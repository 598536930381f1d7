/* What the C GPU tests share: the skip code, a CUDA call check, bf16 on the host, and upload of
 * float64 host values into a device buffer of an element type and back, tensor views. */
#ifndef BARACUDA_TEST_GPU_SUPPORT_H
#define BARACUDA_TEST_GPU_SUPPORT_H

#include <cuda_runtime_api.h>
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

static size_t element_bytes(baracuda_element element) {
  return baracuda_element_size(element);
}

/* Rounds values to the element in place (so that the host copy is what the device holds) and
 * uploads them; the device buffer has at least one byte. f16 is not used by the C tests. */
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
      ((uint16_t*)host)[n] = to_bf16((float)values[n]);
      values[n] = from_bf16(((uint16_t*)host)[n]);
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
      out[n] = from_bf16(((uint16_t*)host)[n]);
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
