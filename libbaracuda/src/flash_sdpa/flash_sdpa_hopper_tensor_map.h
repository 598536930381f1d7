// TMA descriptors (CUtensorMap) of the hopper kernel's operands, encoded on the host through
// the driver's cuTensorMapEncodeTiled, found at run time so that the library loads without a
// driver.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "baracuda/baracuda.h"
#include "flash_sdpa/flash_sdpa_params.h"

namespace baracuda::flash_sdpa {

// Head-dim elements of one TMA box and one shared-memory chunk: 128 bytes of 16-bit elements,
// the width of the 128-byte swizzle that TMA writes and wgmma reads.
constexpr int kTmaChunkElements = 64;
constexpr int kTmaElementBytes = 2;
// TMA needs global addresses and strides in multiples of this many bytes.
constexpr int64_t kTmaAlignmentBytes = 16;

// A [B, H, S, D] operand in elements: extents and strides of the logical axes (D has stride 1).
struct TmaOperand {
  const void* data;
  int64_t extents[4];
  int64_t strides[4];
};

// The operands of a launch that the hopper kernel loads by TMA.
struct TmaOperands {
  TmaOperand q;
  TmaOperand k;
  TmaOperand v;
};

TmaOperands tma_operands(const Params& params);

// Whether TMA can describe `operand`: 16-byte aligned start, non-negative batch / head / row
// strides in multiples of 16 bytes, no zero extent.
bool tma_can_describe(const TmaOperand& operand);

// Encodes `operand`, of f16 or bf16 `element`, as a tiled 4-d map with boxes of
// kTmaChunkElements x box_rows, 128-byte swizzle and zero fill outside the extents. An axis of
// stride 0 (a broadcast) is encoded with extent 1, so that coordinate 0 reads it for every index.
// CUDA_ERROR names the operand when the driver refuses.
baracuda_status encode_tma_operand(CUtensorMap* map, const TmaOperand& operand,
                                   baracuda_element element, int box_rows, const char* op,
                                   const char* name);

}  // namespace baracuda::flash_sdpa
