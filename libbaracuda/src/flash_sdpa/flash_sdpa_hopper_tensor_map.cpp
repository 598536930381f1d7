// TMA descriptors of the hopper kernel's operands, and which operands TMA can describe.
#include "flash_sdpa/flash_sdpa_hopper_tensor_map.h"

#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cinttypes>

#include "common/status.h"
#include "flash_sdpa/flash_sdpa_hopper.h"

namespace baracuda::flash_sdpa {
namespace {

// The driver ABI version of cuTensorMapEncodeTiled that this code calls (CUDA 12.0's).
constexpr unsigned kEncodeTiledAbiVersion = 12000;
// TMA limits: global strides below 2^40 bytes, extents below 2^32.
constexpr int64_t kTmaStrideLimit = int64_t{1} << 40;
constexpr int64_t kTmaExtentLimit = int64_t{1} << 32;
// Logical axes of a TmaOperand, and the map's dimensions (innermost first: D, S, H, B).
constexpr int kAxes = 4;
constexpr int kHeadDimAxis = 3;

bool is_aligned(const void* pointer, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % static_cast<uintptr_t>(bytes) == 0;
}

// The driver's cuTensorMapEncodeTiled, looked up once; nullptr when there is no driver.
PFN_cuTensorMapEncodeTiled_v12000 encode_tiled_entry_point(cudaError_t* error,
                                                           cudaDriverEntryPointQueryResult* found) {
  static cudaError_t lookup_error = cudaSuccess;
  static cudaDriverEntryPointQueryResult lookup_result = cudaDriverEntryPointSuccess;
  static PFN_cuTensorMapEncodeTiled_v12000 entry_point = [] {
    void* function = nullptr;
    lookup_error =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function,
                                         kEncodeTiledAbiVersion, cudaEnableDefault, &lookup_result);
    return lookup_error == cudaSuccess && lookup_result == cudaDriverEntryPointSuccess
               ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function)
               : nullptr;
  }();
  *error = lookup_error;
  *found = lookup_result;
  return entry_point;
}

}  // namespace

bool tma_can_describe(const TmaOperand& operand) {
  if (!is_aligned(operand.data, kTmaAlignmentBytes)) return false;
  for (int axis = 0; axis < kAxes; ++axis) {
    const int64_t extent = operand.extents[axis];
    if (extent <= 0 || extent >= kTmaExtentLimit) return false;
    if (axis == kHeadDimAxis) continue;
    const int64_t stride_bytes = operand.strides[axis] * kTmaElementBytes;
    if (stride_bytes < 0 || stride_bytes >= kTmaStrideLimit ||
        stride_bytes % kTmaAlignmentBytes != 0) {
      return false;
    }
  }
  return operand.strides[kHeadDimAxis] == 1;
}

TmaOperands tma_operands(const Params& params) {
  const int64_t batch = params.batch_size;
  const auto operand = [&](const void* data, int64_t heads, int64_t length, int64_t head_dim,
                           const int64_t (&strides)[4]) {
    return TmaOperand{
        data, {batch, heads, length, head_dim}, {strides[0], strides[1], strides[2], strides[3]}};
  };
  return {operand(params.q, params.num_heads, params.query_len, params.d_k, params.q_strides),
          operand(params.k, params.num_heads_k, params.key_len, params.d_k, params.k_strides),
          operand(params.v, params.num_heads_k, params.key_len, params.d_v, params.v_strides)};
}

baracuda_status encode_tma_operand(CUtensorMap* map, const TmaOperand& operand,
                                   baracuda_element element, int box_rows, const char* op,
                                   const char* name) {
  cudaError_t lookup_error = cudaSuccess;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSuccess;
  const PFN_cuTensorMapEncodeTiled_v12000 encode = encode_tiled_entry_point(&lookup_error, &found);
  if (lookup_error != cudaSuccess) {
    return check_cuda(lookup_error, op, "cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled)");
  }
  if (encode == nullptr) {
    return fail(BARACUDA_STATUS_CUDA_ERROR, op,
                "the driver has no cuTensorMapEncodeTiled (got query result %d, expected "
                "cudaDriverEntryPointSuccess)",
                static_cast<int>(found));
  }
  // Map dimensions innermost first: D, S, H, B. A broadcast axis (stride 0) has extent 1 and
  // any valid stride: only coordinate 0 is read.
  cuuint64_t dims[kAxes];
  cuuint64_t strides[kAxes - 1];
  for (int dim = 0; dim < kAxes; ++dim) {
    const int axis = kHeadDimAxis - dim;
    const bool broadcast = axis != kHeadDimAxis && operand.strides[axis] == 0;
    dims[dim] = broadcast ? 1 : static_cast<cuuint64_t>(operand.extents[axis]);
    if (dim > 0) {
      strides[dim - 1] = broadcast
                             ? static_cast<cuuint64_t>(kTmaAlignmentBytes)
                             : static_cast<cuuint64_t>(operand.strides[axis]) * kTmaElementBytes;
    }
  }
  const cuuint32_t box[kAxes] = {static_cast<cuuint32_t>(kTmaChunkElements),
                                 static_cast<cuuint32_t>(box_rows), 1, 1};
  const cuuint32_t element_strides[kAxes] = {1, 1, 1, 1};
  const CUtensorMapDataType type = element == BARACUDA_ELEMENT_BF16
                                       ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                       : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult result =
      encode(map, type, kAxes, const_cast<void*>(operand.data), dims, strides, box, element_strides,
             CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    return fail(BARACUDA_STATUS_CUDA_ERROR, op,
                "cuTensorMapEncodeTiled(%s) failed (got CUresult %d for extents [%" PRId64
                ", %" PRId64 ", %" PRId64 ", %" PRId64 "], strides [%" PRId64 ", %" PRId64
                ", %" PRId64 ", 1], expected CUDA_SUCCESS)",
                name, static_cast<int>(result), operand.extents[0], operand.extents[1],
                operand.extents[2], operand.extents[3], operand.strides[0], operand.strides[1],
                operand.strides[2]);
  }
  return BARACUDA_STATUS_SUCCESS;
}

bool hopper_can_describe(const Params& params) {
  const TmaOperands operands = tma_operands(params);
  if (!tma_can_describe(operands.q) || !tma_can_describe(operands.k) ||
      !tma_can_describe(operands.v)) {
    return false;
  }
  // y is written as pairs of elements: 4-byte aligned rows.
  constexpr int64_t kPairBytes = 2 * kTmaElementBytes;
  if (params.running.output == nullptr) {
    if (!is_aligned(params.y, kPairBytes)) return false;
    for (int axis = 0; axis < 3; ++axis) {
      if (params.y_strides[axis] * kTmaElementBytes % kPairBytes != 0) return false;
    }
  }
  return true;
}

}  // namespace baracuda::flash_sdpa
