// The part of NCCL's C API that baracuda calls, declared here so that builds never need NCCL.
// Types and values follow nccl.h (NCCL 2.x ABI).
#pragma once

#include <cstddef>

#include "baracuda/baracuda.h"

struct CUstream_st;

namespace baracuda::nccl {

using ncclComm_t = struct ncclComm*;
using cudaStream_t = CUstream_st*;

constexpr int kUniqueIdBytes = 128;
struct ncclUniqueId {
  char internal[kUniqueIdBytes];
};

enum ncclResult_t : int {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5,
  ncclRemoteError = 6,
  ncclInProgress = 7,
};

enum ncclDataType_t : int {
  ncclInt8 = 0,
  ncclUint8 = 1,
  ncclInt32 = 2,
  ncclUint32 = 3,
  ncclInt64 = 4,
  ncclUint64 = 5,
  ncclFloat16 = 6,
  ncclFloat32 = 7,
  ncclFloat64 = 8,
  ncclBfloat16 = 9,
};

// The resolved entry points; every one is present in NCCL 2.13 and newer.
struct Api {
  ncclResult_t (*GetVersion)(int* version);
  const char* (*GetErrorString)(ncclResult_t result);
  const char* (*GetLastError)(ncclComm_t comm);
  ncclResult_t (*GetUniqueId)(ncclUniqueId* unique_id);
  ncclResult_t (*CommInitRank)(ncclComm_t* comm, int world_size, ncclUniqueId unique_id, int rank);
  ncclResult_t (*CommDestroy)(ncclComm_t comm);
  ncclResult_t (*CommAbort)(ncclComm_t comm);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t comm, ncclResult_t* async_error);
  ncclResult_t (*CommCount)(ncclComm_t comm, int* count);
  ncclResult_t (*CommUserRank)(ncclComm_t comm, int* rank);
  ncclResult_t (*CommCuDevice)(ncclComm_t comm, int* device);
  ncclResult_t (*Send)(const void* buffer, size_t count, ncclDataType_t type, int peer,
                       ncclComm_t comm, cudaStream_t stream);
  ncclResult_t (*Recv)(void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                       cudaStream_t stream);
  ncclResult_t (*GroupStart)();
  ncclResult_t (*GroupEnd)();
};

// The loaded API, or nullptr (with the reason recorded for op) when NCCL is not loaded.
const Api* loaded_api(const char* op);

// The API, loading NCCL by the search order first if it is not loaded yet; nullptr (with every
// place tried recorded for op) when no NCCL can be loaded.
const Api* load_api(const char* op);

// "ncclRemoteError", ...: the enumerator's name.
const char* result_name(ncclResult_t result);

// Records a failed NCCL call as BARACUDA_STATUS_NCCL_ERROR naming `call`, with NCCL's result,
// ncclGetErrorString and ncclGetLastError(comm); returns success for ncclSuccess.
baracuda_status check_nccl(const Api& api, ncclResult_t result, ncclComm_t comm, const char* op,
                           const char* call);

}  // namespace baracuda::nccl
