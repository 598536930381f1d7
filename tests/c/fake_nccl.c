/*
 * A stand-in for libnccl.so.2 (its soname too) with every entry point baracuda resolves, so
 * that the loader and the communicator wrappers can be tested without NCCL or a GPU. It is
 * built twice, as two files (fake_nccl_a, fake_nccl_b) that differ only in FAKE_NCCL_VERSION:
 * two NCCL copies. No call dereferences its communicator. The test steers and reads it
 * through fake_nccl_async_error, fake_nccl_abort_count and fake_nccl_destroy_count.
 */
#include <string.h>

#ifndef FAKE_NCCL_VERSION
#error "FAKE_NCCL_VERSION must be defined"
#endif

enum { kUniqueIdBytes = 128, kUniqueIdFill = 0x5a };

typedef struct {
  char internal[kUniqueIdBytes];
} fake_unique_id;

static int g_fake_comm;

/* What ncclCommGetAsyncError reports (an ncclResult_t), and the calls counted. */
int fake_nccl_async_error = 0;
int fake_nccl_abort_count = 0;
int fake_nccl_destroy_count = 0;

int ncclGetVersion(int* version) {
  *version = FAKE_NCCL_VERSION;
  return 0;
}

const char* ncclGetErrorString(int result) {
  (void)result;
  return "fake NCCL error";
}

const char* ncclGetLastError(void* comm) {
  (void)comm;
  return "";
}

int ncclGetUniqueId(fake_unique_id* unique_id) {
  memset(unique_id->internal, kUniqueIdFill, sizeof unique_id->internal);
  return 0;
}

int ncclCommInitRank(void** comm, int world_size, fake_unique_id unique_id, int rank) {
  (void)world_size;
  (void)unique_id;
  (void)rank;
  *comm = &g_fake_comm;
  return 0;
}

int ncclCommDestroy(void* comm) {
  (void)comm;
  ++fake_nccl_destroy_count;
  return 0;
}

int ncclCommAbort(void* comm) {
  (void)comm;
  ++fake_nccl_abort_count;
  return 0;
}

int ncclCommGetAsyncError(void* comm, int* async_error) {
  (void)comm;
  *async_error = fake_nccl_async_error;
  return 0;
}

int ncclCommCount(void* comm, int* count) {
  (void)comm;
  *count = 1;
  return 0;
}

int ncclCommUserRank(void* comm, int* rank) {
  (void)comm;
  *rank = 0;
  return 0;
}

int ncclCommCuDevice(void* comm, int* device) {
  (void)comm;
  *device = 0;
  return 0;
}

int ncclSend(const void* buffer, unsigned long count, int type, int peer, void* comm,
             void* stream) {
  (void)buffer, (void)count, (void)type, (void)peer, (void)comm, (void)stream;
  return 0;
}

int ncclRecv(void* buffer, unsigned long count, int type, int peer, void* comm, void* stream) {
  (void)buffer, (void)count, (void)type, (void)peer, (void)comm, (void)stream;
  return 0;
}

int ncclGroupStart(void) {
  return 0;
}

int ncclGroupEnd(void) {
  return 0;
}
