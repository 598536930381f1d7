#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "flash_sdpa/flash_sdpa_portable.h"

namespace baracuda::flash_sdpa {

#include "flash_sdpa_portable_table.inc"

const PortableInstance* portable_instances(size_t* count) {
  *count = sizeof(kPortableInstances) / sizeof(kPortableInstances[0]);
  return kPortableInstances;
}

}  // namespace baracuda::flash_sdpa
