/*
 * The NCCL loader: refusals name each place tried, in the documented order, and why it
 * failed; with an NCCL present (the wheel or the system's), loading succeeds, reports its path
 * and version, and stays loaded.
 *
 * The communicator wrappers: NULL pointers are refused before NCCL is loaded; without a
 * loadable NCCL every wrapper returns LIBRARY_NOT_LOADED with the loader's reasons; with one,
 * unique ids are made (no GPU needed). With NCCL and a CUDA device, a one-rank communicator is
 * made, queried, checked, waited on and destroyed; without a device that part says it skipped.
 */
#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <baracuda/baracuda.h>

#include "test_check.h"


static const char* find(const char* text, const char* part) {
  const char* at = strstr(text, part);
  return at != NULL ? at : text + strlen(text) + 1;
}

static void test_not_loaded_yet(void) {
  int version = -1;
  CHECK(baracuda_nccl_version(&version) == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "version status");
  CHECK(strcmp(baracuda_last_error_message(),
               "nccl_version: NCCL not loaded (got no library, expected a successful "
               "baracuda_nccl_load)") == 0,
        "message: %s", baracuda_last_error_message());
  CHECK(version == 0, "version %d after a refusal", version);
  CHECK(strcmp(baracuda_nccl_library_path(), "") == 0, "path before load");
  CHECK(baracuda_nccl_version(NULL) == BARACUDA_STATUS_INVALID_PROBLEM, "NULL version");
}

static void test_bad_explicit_path(void) {
  const char* path = "/nonexistent/baracuda-test/libnccl.so.2";
  CHECK(baracuda_nccl_load(path) == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "bad path status");
  const char* message = baracuda_last_error_message();
  const char* prefix =
      "nccl_load: cannot load NCCL (got explicit path '/nonexistent/baracuda-test/libnccl.so.2': ";
  CHECK(strncmp(message, prefix, strlen(prefix)) == 0, "message: %s", message);
  const char* suffix = ", expected that path to be libnccl.so.2)";
  CHECK(strlen(message) > strlen(suffix) &&
            strcmp(message + strlen(message) - strlen(suffix), suffix) == 0,
        "message: %s", message);
  CHECK(strstr(message, "No such file") != NULL, "dlerror text in: %s", message);
  CHECK(strcmp(baracuda_nccl_library_path(), "") == 0, "nothing loaded after a refusal");
}

static void test_not_an_nccl_library(void) {
  CHECK(baracuda_nccl_load("libm.so.6") == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "libm status");
  CHECK(strcmp(baracuda_last_error_message(),
               "nccl_load: cannot load NCCL (got explicit path 'libm.so.6': no symbol "
               "ncclGetVersion (not an NCCL 2.13+ library), expected that path to be "
               "libnccl.so.2)") == 0,
        "message: %s", baracuda_last_error_message());
}

/* The search order: BARACUDA_NCCL_LIBRARY, already loaded, the wheel, the system. Returns
 * whether an NCCL was found (then the search succeeded). */
static int test_search_order(void) {
  setenv("BARACUDA_NCCL_LIBRARY", "/nonexistent/baracuda-env/libnccl.so.2", 1);
  const baracuda_status status = baracuda_nccl_load(NULL);
  unsetenv("BARACUDA_NCCL_LIBRARY");
  if (status == BARACUDA_STATUS_SUCCESS) {
    printf("an NCCL was found: %s\n", baracuda_nccl_library_path());
    return 1;
  }
  CHECK(status == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "search status %d", (int)status);
  const char* message = baracuda_last_error_message();
  const char* env = find(message, "BARACUDA_NCCL_LIBRARY '/nonexistent/baracuda-env/libnccl.so.2': ");
  const char* loaded = find(message, "; already loaded 'libnccl.so.2': not loaded in this process");
  const char* wheel = find(message, "; nvidia-nccl wheel '");
  const char* system = find(message, "; system 'libnccl.so.2': ");
  const char* end = message + strlen(message);
  CHECK(strncmp(message, "nccl_load: cannot load NCCL (got BARACUDA_NCCL_LIBRARY", 54) == 0,
        "message: %s", message);
  CHECK(env < loaded && loaded < wheel && wheel < system && system < end,
        "places out of order or missing: %s", message);
  CHECK(strstr(message, "/../nvidia/nccl/lib/libnccl.so.2': ") != NULL, "wheel path in: %s",
        message);
  CHECK(strstr(message, ", expected libnccl.so.2 in one of these places)") != NULL,
        "message: %s", message);
  printf("no NCCL on this machine; the search said: %s\n", message);
  return 0;
}

static void test_loaded(void) {
  int version = 0;
  CHECK(baracuda_nccl_version(&version) == BARACUDA_STATUS_SUCCESS, "version: %s",
        baracuda_last_error_message());
  CHECK(version >= 21300, "version %d, expected NCCL 2.13 or newer", version);
  CHECK(strstr(baracuda_nccl_library_path(), "libnccl") != NULL, "path %s",
        baracuda_nccl_library_path());
  /* Loaded stays loaded: another path is not opened. */
  CHECK(baracuda_nccl_load("/nonexistent/libnccl.so.2") == BARACUDA_STATUS_SUCCESS,
        "second load");
  printf("NCCL %d from %s\n", version, baracuda_nccl_library_path());
}

/* ------------------------------------------------------------------ communicator wrappers */

/* A non-NULL communicator handle that is never dereferenced: it is passed only where the
 * wrapper refuses before calling NCCL (a NULL output pointer, or no NCCL to load). */
static max_align_t g_not_a_comm;
#define NOT_A_COMM ((baracuda_nccl_comm)(void*)&g_not_a_comm)

/* NCCL picks a network interface for its bootstrap; the loopback one is always there. */
static const char kSocketInterfaceVariable[] = "NCCL_SOCKET_IFNAME";
static const char kLoopbackInterface[] = "lo";

/* How long comm_wait may wait for an idle stream before it gives up (seconds). */
static const double kWaitTimeoutSeconds = 60.0;

enum { kOneRankWorld = 1, kRankZero = 0 };

enum { kMessageCapacity = 512 };

static int starts_with(const char* text, const char* prefix) {
  return strncmp(text, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char* text, const char* suffix) {
  const size_t length = strlen(text);
  const size_t suffix_length = strlen(suffix);
  return length >= suffix_length && strcmp(text + length - suffix_length, suffix) == 0;
}

/* status is INVALID_PROBLEM and the message is "<op>: <name> is NULL (got NULL, expected
 * <what>)"; what NULL checks only the part up to "(got NULL". */
static void expect_null_refusal(baracuda_status status, const char* op, const char* name,
                                const char* what) {
  char expected[kMessageCapacity];
  if (what != NULL) {
    snprintf(expected, sizeof expected, "%s: %s is NULL (got NULL, expected %s)", op, name, what);
  } else {
    snprintf(expected, sizeof expected, "%s: %s is NULL (got NULL", op, name);
  }
  const char* message = baracuda_last_error_message();
  CHECK(status == BARACUDA_STATUS_INVALID_PROBLEM, "%s with NULL %s: status %d (%s)", op, name,
        (int)status, baracuda_status_string(status));
  CHECK(what != NULL ? strcmp(message, expected) == 0 : starts_with(message, expected),
        "%s NULL %s message: %s", op, name, message);
}

/* NULL pointers are refused before NCCL is loaded, whether or not it can be. */
static void test_comm_null_pointers(void) {
  static const char kComm[] = "a communicator";
  static const char kPointer[] = "a pointer";
  baracuda_nccl_unique_id id;
  memset(&id, 0, sizeof id);
  int value = 0;

  expect_null_refusal(baracuda_nccl_get_unique_id(NULL), "nccl_get_unique_id", "unique_id",
                      kPointer);

  expect_null_refusal(baracuda_nccl_comm_init_rank(NULL, kOneRankWorld, &id, kRankZero),
                      "nccl_comm_init_rank", "comm", NULL);
  baracuda_nccl_comm comm = NOT_A_COMM;
  expect_null_refusal(baracuda_nccl_comm_init_rank(&comm, kOneRankWorld, NULL, kRankZero),
                      "nccl_comm_init_rank", "unique_id", kPointer);
  CHECK(comm == NULL, "comm_init_rank sets *comm to NULL when it refuses");

  /* World size and rank are checked before NCCL is loaded. */
  const struct {
    int world_size, rank;
    const char* message;
  } bad_worlds[] = {
      {0, 0, "nccl_comm_init_rank: world_size must be positive (got 0, expected >= 1)"},
      {-3, 0, "nccl_comm_init_rank: world_size must be positive (got -3, expected >= 1)"},
      {2, 2, "nccl_comm_init_rank: rank is outside the world (got 2, expected 0 <= rank < 2)"},
      {2, -1, "nccl_comm_init_rank: rank is outside the world (got -1, expected 0 <= rank < 2)"},
  };
  for (size_t n = 0; n < sizeof bad_worlds / sizeof bad_worlds[0]; ++n) {
    comm = NOT_A_COMM;
    const baracuda_status status =
        baracuda_nccl_comm_init_rank(&comm, bad_worlds[n].world_size, &id, bad_worlds[n].rank);
    CHECK(status == BARACUDA_STATUS_INVALID_PROBLEM, "comm_init_rank world %d rank %d: status %d",
          bad_worlds[n].world_size, bad_worlds[n].rank, (int)status);
    CHECK(strcmp(baracuda_last_error_message(), bad_worlds[n].message) == 0,
          "comm_init_rank world %d rank %d message: %s", bad_worlds[n].world_size,
          bad_worlds[n].rank, baracuda_last_error_message());
    CHECK(comm == NULL, "comm_init_rank world %d rank %d sets *comm to NULL",
          bad_worlds[n].world_size, bad_worlds[n].rank);
  }

  expect_null_refusal(baracuda_nccl_comm_destroy(NULL), "nccl_comm_destroy", "comm", kComm);
  expect_null_refusal(baracuda_nccl_comm_abort(NULL), "nccl_comm_abort", "comm", kComm);
  expect_null_refusal(baracuda_nccl_comm_world_size(NULL, &value), "nccl_comm_world_size", "comm",
                      kComm);
  expect_null_refusal(baracuda_nccl_comm_world_size(NOT_A_COMM, NULL), "nccl_comm_world_size",
                      "world_size", kPointer);
  expect_null_refusal(baracuda_nccl_comm_rank(NULL, &value), "nccl_comm_rank", "comm", kComm);
  expect_null_refusal(baracuda_nccl_comm_rank(NOT_A_COMM, NULL), "nccl_comm_rank", "rank",
                      kPointer);
  expect_null_refusal(baracuda_nccl_comm_device(NULL, &value), "nccl_comm_device", "comm", kComm);
  expect_null_refusal(baracuda_nccl_comm_device(NOT_A_COMM, NULL), "nccl_comm_device", "device",
                      kPointer);
  expect_null_refusal(baracuda_nccl_comm_check(NULL), "nccl_comm_check", "comm", kComm);
  expect_null_refusal(baracuda_nccl_comm_wait(NULL, NULL, kWaitTimeoutSeconds), "nccl_comm_wait",
                      "comm", kComm);
}

/* The wrapper loaded NCCL by the search order and failed: LIBRARY_NOT_LOADED with the
 * loader's message under the wrapper's name. */
static void expect_not_loaded(baracuda_status status, const char* op) {
  char prefix[kMessageCapacity];
  snprintf(prefix, sizeof prefix, "%s: cannot load NCCL (got ", op);
  const char* message = baracuda_last_error_message();
  CHECK(status == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "%s without NCCL: status %d (%s)", op,
        (int)status, baracuda_status_string(status));
  CHECK(starts_with(message, prefix), "%s without NCCL: message %s", op, message);
  CHECK(strstr(message, "; system 'libnccl.so.2': ") != NULL,
        "%s without NCCL: the system place is named in: %s", op, message);
  CHECK(ends_with(message, ", expected libnccl.so.2 in one of these places)"),
        "%s without NCCL: message %s", op, message);
}

/* No NCCL can be loaded: every wrapper tries the search order and says why it failed. The
 * communicator handle is never reached, so a fake one does. */
static void test_comm_without_nccl(void) {
  baracuda_nccl_unique_id id;
  memset(&id, 0, sizeof id);
  int value = -1;
  expect_not_loaded(baracuda_nccl_get_unique_id(&id), "nccl_get_unique_id");
  baracuda_nccl_comm comm = NOT_A_COMM;
  expect_not_loaded(baracuda_nccl_comm_init_rank(&comm, kOneRankWorld, &id, kRankZero),
                    "nccl_comm_init_rank");
  CHECK(comm == NULL, "comm_init_rank without NCCL sets *comm to NULL");
  expect_not_loaded(baracuda_nccl_comm_destroy(NOT_A_COMM), "nccl_comm_destroy");
  expect_not_loaded(baracuda_nccl_comm_abort(NOT_A_COMM), "nccl_comm_abort");
  expect_not_loaded(baracuda_nccl_comm_world_size(NOT_A_COMM, &value), "nccl_comm_world_size");
  expect_not_loaded(baracuda_nccl_comm_rank(NOT_A_COMM, &value), "nccl_comm_rank");
  expect_not_loaded(baracuda_nccl_comm_device(NOT_A_COMM, &value), "nccl_comm_device");
  expect_not_loaded(baracuda_nccl_comm_check(NOT_A_COMM), "nccl_comm_check");
  expect_not_loaded(baracuda_nccl_comm_wait(NOT_A_COMM, NULL, kWaitTimeoutSeconds),
                    "nccl_comm_wait");
  CHECK(strcmp(baracuda_nccl_library_path(), "") == 0, "nothing loaded by the wrappers");
}

static int is_all_zero(const baracuda_nccl_unique_id* id) {
  for (int n = 0; n < BARACUDA_NCCL_UNIQUE_ID_BYTES; ++n) {
    if (id->internal[n] != 0) return 0;
  }
  return 1;
}

/* ncclGetUniqueId needs no GPU: each call gives a fresh, non-zero id. */
static void test_unique_ids(void) {
  setenv(kSocketInterfaceVariable, kLoopbackInterface, 1);
  CHECK(sizeof(baracuda_nccl_unique_id) == BARACUDA_NCCL_UNIQUE_ID_BYTES,
        "unique id is %zu bytes, expected %d", sizeof(baracuda_nccl_unique_id),
        BARACUDA_NCCL_UNIQUE_ID_BYTES);
  baracuda_nccl_unique_id first;
  baracuda_nccl_unique_id second;
  memset(&first, 0, sizeof first);
  memset(&second, 0, sizeof second);
  baracuda_status status = baracuda_nccl_get_unique_id(&first);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "first unique id: %s", baracuda_last_error_message());
  CHECK(strcmp(baracuda_last_error_message(), "") == 0, "message after a success: %s",
        baracuda_last_error_message());
  status = baracuda_nccl_get_unique_id(&second);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "second unique id: %s", baracuda_last_error_message());
  CHECK(!is_all_zero(&first), "first unique id is not all zero");
  CHECK(!is_all_zero(&second), "second unique id is not all zero");
  CHECK(memcmp(&first, &second, sizeof first) != 0, "two unique ids differ");
}

/* Whether a CUDA device is present, as a valid flash plan select reports it (this test links
 * no CUDA runtime of its own). */
static int cuda_device_present(void) {
  enum { kBatch = 1, kHeads = 1, kLength = 1, kHeadDim = 8 };
  baracuda_flash_sdpa_descriptor desc;
  baracuda_flash_sdpa_descriptor_init(&desc, kBatch, kHeads, kLength, kLength, kHeadDim, kHeadDim,
                                      BARACUDA_ELEMENT_F32);
  baracuda_flash_sdpa_plan plan = NULL;
  const baracuda_status status = baracuda_flash_sdpa_plan_select(&desc, NULL, &plan);
  baracuda_flash_sdpa_plan_destroy(plan);
  if (status != BARACUDA_STATUS_SUCCESS) {
    printf("no usable CUDA device (%s)\n", baracuda_last_error_message());
  }
  return status == BARACUDA_STATUS_SUCCESS;
}

/* A one-rank communicator on the current device: made, queried, checked, waited on (the
 * legacy default stream, idle), destroyed. */
static void test_one_rank_communicator(void) {
  baracuda_nccl_unique_id id;
  memset(&id, 0, sizeof id);
  CHECK(baracuda_nccl_get_unique_id(&id) == BARACUDA_STATUS_SUCCESS, "unique id: %s",
        baracuda_last_error_message());
  baracuda_nccl_comm comm = NULL;
  baracuda_status status = baracuda_nccl_comm_init_rank(&comm, kOneRankWorld, &id, kRankZero);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "comm_init_rank of one rank: %s",
        baracuda_last_error_message());
  if (status != BARACUDA_STATUS_SUCCESS) return;
  CHECK(comm != NULL, "comm_init_rank stores a communicator");

  int world_size = -1;
  int rank = -1;
  int device = -1;
  CHECK(baracuda_nccl_comm_world_size(comm, &world_size) == BARACUDA_STATUS_SUCCESS,
        "comm_world_size: %s", baracuda_last_error_message());
  CHECK(world_size == kOneRankWorld, "world size %d, expected %d", world_size, kOneRankWorld);
  CHECK(baracuda_nccl_comm_rank(comm, &rank) == BARACUDA_STATUS_SUCCESS, "comm_rank: %s",
        baracuda_last_error_message());
  CHECK(rank == kRankZero, "rank %d, expected %d", rank, kRankZero);
  CHECK(baracuda_nccl_comm_device(comm, &device) == BARACUDA_STATUS_SUCCESS, "comm_device: %s",
        baracuda_last_error_message());
  CHECK(device >= 0, "device %d, expected a CUDA ordinal", device);
  CHECK(baracuda_nccl_comm_check(comm) == BARACUDA_STATUS_SUCCESS, "comm_check: %s",
        baracuda_last_error_message());
  CHECK(baracuda_nccl_comm_wait(comm, NULL, kWaitTimeoutSeconds) == BARACUDA_STATUS_SUCCESS,
        "comm_wait on the default stream: %s", baracuda_last_error_message());
  CHECK(strcmp(baracuda_last_error_message(), "") == 0, "message after comm_wait: %s",
        baracuda_last_error_message());
  CHECK(baracuda_nccl_comm_destroy(comm) == BARACUDA_STATUS_SUCCESS, "comm_destroy: %s",
        baracuda_last_error_message());
  printf("one-rank communicator on device %d: made, queried, waited on, destroyed\n", device);
}

int main(void) {
  test_not_loaded_yet();
  test_bad_explicit_path();
  test_not_an_nccl_library();
  test_comm_null_pointers();
  int found = test_search_order();
  if (!found) test_comm_without_nccl();
  const char* wheel_library = getenv("BARACUDA_TEST_NCCL_LIBRARY");
  if (!found && wheel_library != NULL && *wheel_library != '\0') {
    CHECK(baracuda_nccl_load(wheel_library) == BARACUDA_STATUS_SUCCESS, "explicit %s: %s",
          wheel_library, baracuda_last_error_message());
    found = 1;
  }
  if (found) {
    test_loaded();
    test_comm_null_pointers();
    test_unique_ids();
    if (cuda_device_present()) {
      test_one_rank_communicator();
    } else {
      printf("one-rank communicator checks skipped: they need a CUDA device\n");
    }
  } else {
    printf("NCCL-present checks skipped: no NCCL here and BARACUDA_TEST_NCCL_LIBRARY unset\n");
  }
  return test_summary();
}
