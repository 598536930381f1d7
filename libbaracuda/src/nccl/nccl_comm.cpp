// The communicator calls of baracuda.h: each loads NCCL if needed, checks its pointers, and
// reports a failing NCCL call with NCCL's own text (check_nccl). Every body runs through
// guard, so no C++ exception crosses the C ABI.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>

#include "baracuda/baracuda.h"
#include "common/status.h"
#include "nccl/nccl_api.h"

namespace {

using baracuda::fail;
using baracuda::nccl::Api;
using baracuda::nccl::check_nccl;
using baracuda::nccl::load_api;
using baracuda::nccl::ncclComm_t;
using baracuda::nccl::ncclResult_t;
using baracuda::nccl::ncclUniqueId;

static_assert(sizeof(baracuda_nccl_unique_id) == sizeof(ncclUniqueId),
              "baracuda_nccl_unique_id must hold exactly an ncclUniqueId");

// How often comm_wait looks at the stream and the communicator.
constexpr std::chrono::microseconds kWaitPollInterval{200};

baracuda_status null_argument(const char* op, const char* name) {
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op, "%s is NULL (got NULL, expected %s)", name,
              std::strcmp(name, "comm") == 0 ? "a communicator" : "a pointer");
}

baracuda_status null_destination(const char* op, const char* name) {
  return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
              "%s is NULL (got NULL, expected a place to store the communicator)", name);
}

baracuda_status finish(baracuda_status status) {
  return status == BARACUDA_STATUS_SUCCESS ? baracuda::succeed() : status;
}

// What a failed wait does with the communicator.
enum class OnFailure { kAbort, kKeep };

// Aborts comm after a failed wait when asked to; the abort's own failure is not reported over
// the first one.
baracuda_status end_after(const Api& api, ncclComm_t comm, OnFailure on_failure,
                          baracuda_status status) {
  if (on_failure == OnFailure::kAbort) api.CommAbort(comm);
  return status;
}

// The body of baracuda_nccl_comm_wait and _wait_no_abort. Each poll reads the communicator's
// asynchronous error first (an NCCL failure: comm is ended as on_failure says), then the
// stream: done, still running, or a CUDA error (reported as such; comm is left alone, since
// the failure is not NCCL's).
baracuda_status wait_for(baracuda_nccl_comm comm, baracuda_stream stream, double timeout_seconds,
                         OnFailure on_failure, const char* op) {
  if (comm == nullptr) return null_argument(op, "comm");
  if (std::isnan(timeout_seconds) || (std::isinf(timeout_seconds) && timeout_seconds < 0)) {
    return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                "timeout_seconds is not a duration (got %g, expected seconds: > 0 and finite for "
                "a limit, +inf or <= 0 for none)",
                timeout_seconds);
  }
  const Api* api = load_api(op);
  if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
  const char* ended = on_failure == OnFailure::kAbort ? "the communicator was aborted"
                                                      : "the communicator was left to its owner";
  const std::string pending_work = std::string("the communicator's pending work (") + ended + ")";
  const auto start = std::chrono::steady_clock::now();
  const std::chrono::duration<double> timeout(timeout_seconds);
  for (;;) {
    ncclResult_t async_error = baracuda::nccl::ncclSuccess;
    baracuda_status status = check_nccl(*api, api->CommGetAsyncError(comm, &async_error), comm, op,
                                        "ncclCommGetAsyncError");
    if (status == BARACUDA_STATUS_SUCCESS && async_error != baracuda::nccl::ncclInProgress) {
      status = check_nccl(*api, async_error, comm, op, pending_work.c_str());
    }
    if (status != BARACUDA_STATUS_SUCCESS) return end_after(*api, comm, on_failure, status);
    const cudaError_t query = cudaStreamQuery(stream);
    if (query == cudaSuccess) return baracuda::succeed();
    if (query != cudaErrorNotReady) {
      return baracuda::check_cuda(query, op, "cudaStreamQuery of the waited stream");
    }
    const std::chrono::duration<double> waited = std::chrono::steady_clock::now() - start;
    if (timeout_seconds > 0 && waited > timeout) {
      return end_after(
          *api, comm, on_failure,
          fail(BARACUDA_STATUS_NCCL_ERROR, op,
               "the stream's work did not finish in time, %s (got %.1f s without progress or "
               "an NCCL error, expected completion within %.1f s: a peer may have died or "
               "stopped taking part)",
               ended, waited.count(), timeout_seconds));
    }
    std::this_thread::sleep_for(kWaitPollInterval);
  }
}

}  // namespace

extern "C" {

baracuda_status baracuda_nccl_get_unique_id(baracuda_nccl_unique_id* unique_id) {
  constexpr const char* op = "nccl_get_unique_id";
  return baracuda::guard(op, [&] {
    if (unique_id == nullptr) return null_argument(op, "unique_id");
    const Api* api = load_api(op);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    ncclUniqueId id;
    const baracuda_status status =
        check_nccl(*api, api->GetUniqueId(&id), nullptr, op, "ncclGetUniqueId");
    if (status == BARACUDA_STATUS_SUCCESS) {
      std::memcpy(unique_id->internal, id.internal, sizeof(id));
    }
    return finish(status);
  });
}

baracuda_status baracuda_nccl_comm_init_rank(baracuda_nccl_comm* comm, int world_size,
                                             const baracuda_nccl_unique_id* unique_id, int rank) {
  constexpr const char* op = "nccl_comm_init_rank";
  return baracuda::guard(op, [&] {
    if (comm == nullptr) return null_destination(op, "comm");
    *comm = nullptr;
    if (unique_id == nullptr) return null_argument(op, "unique_id");
    if (world_size < 1) {
      return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                  "world_size must be positive (got %d, expected >= 1)", world_size);
    }
    if (rank < 0 || rank >= world_size) {
      return fail(BARACUDA_STATUS_INVALID_PROBLEM, op,
                  "rank is outside the world (got %d, expected 0 <= rank < %d)", rank, world_size);
    }
    const Api* api = load_api(op);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    ncclUniqueId id;
    std::memcpy(id.internal, unique_id->internal, sizeof(id));
    ncclComm_t made = nullptr;
    const baracuda_status status = check_nccl(*api, api->CommInitRank(&made, world_size, id, rank),
                                              nullptr, op, "ncclCommInitRank");
    if (status == BARACUDA_STATUS_SUCCESS) *comm = made;
    return finish(status);
  });
}

baracuda_status baracuda_nccl_comm_destroy(baracuda_nccl_comm comm) {
  constexpr const char* op = "nccl_comm_destroy";
  return baracuda::guard(op, [&] {
    if (comm == nullptr) return null_argument(op, "comm");
    const Api* api = load_api(op);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    return finish(check_nccl(*api, api->CommDestroy(comm), nullptr, op, "ncclCommDestroy"));
  });
}

baracuda_status baracuda_nccl_comm_abort(baracuda_nccl_comm comm) {
  constexpr const char* op = "nccl_comm_abort";
  return baracuda::guard(op, [&] {
    if (comm == nullptr) return null_argument(op, "comm");
    const Api* api = load_api(op);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    return finish(check_nccl(*api, api->CommAbort(comm), nullptr, op, "ncclCommAbort"));
  });
}

baracuda_status baracuda_nccl_comm_world_size(baracuda_nccl_comm comm, int* world_size) {
  constexpr const char* op = "nccl_comm_world_size";
  return baracuda::guard(op, [&] {
    if (comm == nullptr) return null_argument(op, "comm");
    if (world_size == nullptr) return null_argument(op, "world_size");
    const Api* api = load_api(op);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    return finish(check_nccl(*api, api->CommCount(comm, world_size), comm, op, "ncclCommCount"));
  });
}

baracuda_status baracuda_nccl_comm_rank(baracuda_nccl_comm comm, int* rank) {
  constexpr const char* op = "nccl_comm_rank";
  return baracuda::guard(op, [&] {
    if (comm == nullptr) return null_argument(op, "comm");
    if (rank == nullptr) return null_argument(op, "rank");
    const Api* api = load_api(op);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    return finish(check_nccl(*api, api->CommUserRank(comm, rank), comm, op, "ncclCommUserRank"));
  });
}

baracuda_status baracuda_nccl_comm_device(baracuda_nccl_comm comm, int* device) {
  constexpr const char* op = "nccl_comm_device";
  return baracuda::guard(op, [&] {
    if (comm == nullptr) return null_argument(op, "comm");
    if (device == nullptr) return null_argument(op, "device");
    const Api* api = load_api(op);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    return finish(check_nccl(*api, api->CommCuDevice(comm, device), comm, op, "ncclCommCuDevice"));
  });
}

baracuda_status baracuda_nccl_comm_check(baracuda_nccl_comm comm) {
  constexpr const char* op = "nccl_comm_check";
  return baracuda::guard(op, [&] {
    if (comm == nullptr) return null_argument(op, "comm");
    const Api* api = load_api(op);
    if (api == nullptr) return BARACUDA_STATUS_LIBRARY_NOT_LOADED;
    ncclResult_t async_error = baracuda::nccl::ncclSuccess;
    baracuda_status status = check_nccl(*api, api->CommGetAsyncError(comm, &async_error), comm, op,
                                        "ncclCommGetAsyncError");
    if (status != BARACUDA_STATUS_SUCCESS) return status;
    return finish(check_nccl(*api, async_error, comm, op, "the communicator's pending work"));
  });
}

baracuda_status baracuda_nccl_comm_wait(baracuda_nccl_comm comm, baracuda_stream stream,
                                        double timeout_seconds) {
  constexpr const char* op = "nccl_comm_wait";
  return baracuda::guard(
      op, [&] { return wait_for(comm, stream, timeout_seconds, OnFailure::kAbort, op); });
}

baracuda_status baracuda_nccl_comm_wait_no_abort(baracuda_nccl_comm comm, baracuda_stream stream,
                                                 double timeout_seconds) {
  constexpr const char* op = "nccl_comm_wait_no_abort";
  return baracuda::guard(
      op, [&] { return wait_for(comm, stream, timeout_seconds, OnFailure::kKeep, op); });
}

}  // extern "C"
