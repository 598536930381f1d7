/*
 * The NCCL loader: refusals name each place tried, in the documented order, and why it
 * failed; an explicit path or BARACUDA_NCCL_LIBRARY is the only place tried, loaded or
 * refused, never replaced: a second load of another file, an empty path and a second NCCL
 * copy beside one already in the process are refused; messages come back whole, however
 * long. With an NCCL present (the wheel or the system's), loading succeeds, reports its path
 * and version, and stays loaded.
 *
 * The communicator wrappers: NULL pointers are refused before NCCL is loaded; without a
 * loadable NCCL every wrapper returns LIBRARY_NOT_LOADED with the loader's reasons; with one,
 * unique ids are made (no GPU needed). comm_wait aborts only on an NCCL failure (never with
 * _no_abort), never on a CUDA error, and refuses a NaN or -inf timeout. With NCCL and a CUDA
 * device, a one-rank communicator is made, queried, checked, waited on and destroyed; without
 * a device that part says it skipped.
 *
 * The loader's state is process-global, so each scenario runs in a fresh process: main runs
 * this program again (/proc/self/exe) once per scenario and gathers the exit codes. Arguments:
 * the two stand-in NCCL libraries (fake_nccl.c, "" when absent), then a scenario name in the
 * child. BARACUDA_TEST_NCCL_LIBRARY names a real NCCL for the scenarios that need one.
 */
#define _XOPEN_SOURCE 700
#include <dlfcn.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <baracuda/baracuda.h>

#include "test_check.h"

static const char* find(const char* text, const char* part) {
  const char* at = strstr(text, part);
  return at != NULL ? at : text + strlen(text) + 1;
}

enum { kMessageCapacity = 512 };

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

/* A set BARACUDA_NCCL_LIBRARY is the only place tried: a missing file or a library without
 * NCCL's symbols is refused with the variable's value and the reason, never replaced by the
 * search order, whatever NCCL this machine has. */
static void test_variable_is_the_only_candidate(void) {
  static const char kMissing[] = "/nonexistent/baracuda-env/libnccl.so.2";
  setenv("BARACUDA_NCCL_LIBRARY", kMissing, 1);
  baracuda_status status = baracuda_nccl_load(NULL);
  const char* message = baracuda_last_error_message();
  CHECK(status == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "missing variable file: status %d (%s)",
        (int)status, message);
  CHECK(strcmp(message,
               "nccl_load: cannot load NCCL (got BARACUDA_NCCL_LIBRARY "
               "'/nonexistent/baracuda-env/libnccl.so.2': /nonexistent/baracuda-env/libnccl.so.2: "
               "cannot open shared object file: No such file or directory, expected "
               "BARACUDA_NCCL_LIBRARY to name libnccl.so.2, the only place tried while it is "
               "set)") == 0,
        "message: %s", message);
  CHECK(strcmp(baracuda_nccl_library_path(), "") == 0, "nothing loaded after the refusal");

  /* A wrapper loads by the same rule. */
  baracuda_nccl_unique_id id;
  status = baracuda_nccl_get_unique_id(&id);
  message = baracuda_last_error_message();
  CHECK(status == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "wrapper: status %d", (int)status);
  CHECK(starts_with(message,
                    "nccl_get_unique_id: cannot load NCCL (got BARACUDA_NCCL_LIBRARY "
                    "'/nonexistent/baracuda-env/libnccl.so.2': ") &&
            strstr(message, "already loaded") == NULL && strstr(message, "system") == NULL,
        "wrapper message: %s", message);

  setenv("BARACUDA_NCCL_LIBRARY", "libm.so.6", 1);
  status = baracuda_nccl_load(NULL);
  CHECK(status == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "non-NCCL variable file: status %d",
        (int)status);
  CHECK(strcmp(baracuda_last_error_message(),
               "nccl_load: cannot load NCCL (got BARACUDA_NCCL_LIBRARY 'libm.so.6': no symbol "
               "ncclGetVersion (not an NCCL 2.13+ library), expected BARACUDA_NCCL_LIBRARY to "
               "name libnccl.so.2, the only place tried while it is set)") == 0,
        "message: %s", baracuda_last_error_message());
  unsetenv("BARACUDA_NCCL_LIBRARY");
}

/* The search order without the variable: already loaded, the wheel, the system. Returns
 * whether an NCCL was found (then the search succeeded). */
static int test_search_order(void) {
  unsetenv("BARACUDA_NCCL_LIBRARY");
  const baracuda_status status = baracuda_nccl_load(NULL);
  if (status == BARACUDA_STATUS_SUCCESS) {
    printf("an NCCL was found: %s\n", baracuda_nccl_library_path());
    return 1;
  }
  CHECK(status == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "search status %d", (int)status);
  const char* message = baracuda_last_error_message();
  const char* loaded = find(message, "already loaded 'libnccl.so.2': not loaded in this process");
  const char* wheel = find(message, "; nvidia-nccl wheel '");
  const char* system = find(message, "; system 'libnccl.so.2': ");
  const char* end = message + strlen(message);
  CHECK(starts_with(message, "nccl_load: cannot load NCCL (got already loaded 'libnccl.so.2'"),
        "message: %s", message);
  CHECK(loaded < wheel && wheel < system && system < end, "places out of order or missing: %s",
        message);
  CHECK(strstr(message, "/../nvidia/nccl/lib/libnccl.so.2': ") != NULL, "wheel path in: %s",
        message);
  CHECK(ends_with(message, ", expected libnccl.so.2 in one of these places)"), "message: %s",
        message);
  printf("no NCCL on this machine; the search said: %s\n", message);
  return 0;
}

/* An empty path is refused, whatever is loaded. */
static void test_empty_path(void) {
  CHECK(baracuda_nccl_load("") == BARACUDA_STATUS_INVALID_PROBLEM, "empty path status");
  CHECK(strcmp(baracuda_last_error_message(),
               "nccl_load: path is empty (got \"\", expected the path of libnccl.so.2, or NULL "
               "for the search order)") == 0,
        "message: %s", baracuda_last_error_message());
}

/* A refusal naming a path of kLongPathBytes comes back whole: the path, then the end. */
static void test_long_path_message(void) {
  enum { kLongPathBytes = 3000, kComponentBytes = 100 };
  static char path[kLongPathBytes + 1];
  static const char kRoot[] = "/nonexistent";
  strcpy(path, kRoot);
  size_t length = strlen(kRoot);
  for (; length < kLongPathBytes; ++length) {
    path[length] = (length % kComponentBytes == 0) ? '/' : 'p';
  }
  path[kLongPathBytes] = '\0';
  CHECK(baracuda_nccl_load(path) == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "long path status");
  const char* message = baracuda_last_error_message();
  char prefix[kMessageCapacity];
  snprintf(prefix, sizeof prefix, "nccl_load: cannot load NCCL (got explicit path '%.64s", path);
  CHECK(strlen(message) > kLongPathBytes, "message of %zu bytes, expected more than %d",
        strlen(message), kLongPathBytes);
  CHECK(starts_with(message, prefix), "message start: %.200s", message);
  CHECK(strstr(message, path) != NULL, "the whole path is in the message");
  CHECK(ends_with(message, ", expected that path to be libnccl.so.2)"), "message end: %s",
        message + (strlen(message) > 200 ? strlen(message) - 200 : 0));
}

static void test_loaded(void) {
  int version = 0;
  CHECK(baracuda_nccl_version(&version) == BARACUDA_STATUS_SUCCESS, "version: %s",
        baracuda_last_error_message());
  CHECK(version >= 21300, "version %d, expected NCCL 2.13 or newer", version);
  CHECK(strstr(baracuda_nccl_library_path(), "libnccl") != NULL, "path %s",
        baracuda_nccl_library_path());
  /* Loaded stays loaded: the same file again succeeds, another path is refused. */
  CHECK(baracuda_nccl_load(NULL) == BARACUDA_STATUS_SUCCESS, "second load by the search order");
  CHECK(baracuda_nccl_load(baracuda_nccl_library_path()) == BARACUDA_STATUS_SUCCESS,
        "second load of the same path: %s", baracuda_last_error_message());
  CHECK(baracuda_nccl_load("/nonexistent/libnccl.so.2") == BARACUDA_STATUS_INVALID_PROBLEM,
        "second load of another path");
  CHECK(starts_with(baracuda_last_error_message(),
                    "nccl_load: another NCCL is loaded already (got path "
                    "'/nonexistent/libnccl.so.2', expected '"),
        "message: %s", baracuda_last_error_message());
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

/* ------------------------------------------------------------------ stand-in NCCL copies */

/* The two stand-ins report these versions (tests/c/CMakeLists.txt). */
enum { kFakeVersionA = 29901, kFakeVersionB = 29902 };

/* The stand-ins' paths, from the command line. */
static const char* g_fake_a = "";
static const char* g_fake_b = "";

/* One of the stand-in's counters or switches, found in the copy at path (already loaded). */
static int* fake_variable(const char* path, const char* name) {
  void* handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  CHECK(handle != NULL, "stand-in %s is loaded", path);
  if (handle == NULL) return NULL;
  int* variable = (int*)dlsym(handle, name);
  dlclose(handle);
  CHECK(variable != NULL, "stand-in symbol %s", name);
  return variable;
}

static void expect_version(int expected) {
  int version = 0;
  CHECK(baracuda_nccl_version(&version) == BARACUDA_STATUS_SUCCESS, "version: %s",
        baracuda_last_error_message());
  CHECK(version == expected, "version %d, expected %d (the copy asked for)", version, expected);
}

/* A folder of its own under TMPDIR (or /tmp) holding a link to target (made absolute);
 * returns the link. */
static const char* link_to(const char* target, char* link, size_t capacity) {
  const char* base = getenv("TMPDIR");
  char folder[kMessageCapacity];
  snprintf(folder, sizeof folder, "%s/baracuda-nccl-test-XXXXXX",
           base != NULL && *base != '\0' ? base : "/tmp");
  CHECK(mkdtemp(folder) != NULL, "mkdtemp %s", folder);
  snprintf(link, capacity, "%s/libnccl.so.2", folder);
  char* absolute = realpath(target, NULL);
  CHECK(absolute != NULL && symlink(absolute, link) == 0, "symlink %s -> %s", link, target);
  free(absolute);
  return link;
}

static void remove_link(const char* link) {
  unlink(link);
  char folder[kMessageCapacity];
  snprintf(folder, sizeof folder, "%s", link);
  char* slash = strrchr(folder, '/');
  if (slash != NULL) *slash = '\0';
  rmdir(folder);
}

/* A loaded NCCL is kept: the same file (its path, a link to it, NULL) succeeds; another file,
 * a missing path or an empty one is refused, and the first library stays. */
static void scenario_second_load(void) {
  CHECK(baracuda_nccl_load(g_fake_a) == BARACUDA_STATUS_SUCCESS, "load A: %s",
        baracuda_last_error_message());
  char loaded[kMessageCapacity];
  snprintf(loaded, sizeof loaded, "%s", baracuda_nccl_library_path());
  CHECK(strcmp(loaded, g_fake_a) == 0, "path %s, expected %s", loaded, g_fake_a);
  expect_version(kFakeVersionA);
  CHECK(baracuda_nccl_load(g_fake_a) == BARACUDA_STATUS_SUCCESS, "load A again: %s",
        baracuda_last_error_message());
  CHECK(strcmp(baracuda_last_error_message(), "") == 0, "message after a success");
  char link[kMessageCapacity];
  link_to(g_fake_a, link, sizeof link);
  CHECK(baracuda_nccl_load(link) == BARACUDA_STATUS_SUCCESS, "load a link to A: %s",
        baracuda_last_error_message());
  remove_link(link);
  CHECK(baracuda_nccl_load(NULL) == BARACUDA_STATUS_SUCCESS, "load NULL after A: %s",
        baracuda_last_error_message());

  CHECK(baracuda_nccl_load(g_fake_b) == BARACUDA_STATUS_INVALID_PROBLEM, "load B after A");
  char expected[3 * kMessageCapacity];
  snprintf(expected, sizeof expected,
           "nccl_load: another NCCL is loaded already (got path '%s', expected '%s', the "
           "library loaded first: a loaded NCCL stays loaded for the life of the process)",
           g_fake_b, g_fake_a);
  CHECK(strcmp(baracuda_last_error_message(), expected) == 0, "message: %s",
        baracuda_last_error_message());
  CHECK(baracuda_nccl_load("/nonexistent/libnccl.so.2") == BARACUDA_STATUS_INVALID_PROBLEM,
        "load of a missing path after A");
  test_empty_path();
  CHECK(strcmp(baracuda_nccl_library_path(), g_fake_a) == 0, "A stays loaded: %s",
        baracuda_nccl_library_path());
  expect_version(kFakeVersionA);
}

/* The variable, set, is what is loaded. */
static void scenario_variable_loads(void) {
  setenv("BARACUDA_NCCL_LIBRARY", g_fake_b, 1);
  CHECK(baracuda_nccl_load(NULL) == BARACUDA_STATUS_SUCCESS, "variable B: %s",
        baracuda_last_error_message());
  CHECK(strcmp(baracuda_nccl_library_path(), g_fake_b) == 0, "path %s",
        baracuda_nccl_library_path());
  expect_version(kFakeVersionB);
}

/* A framework loaded copy A: neither the variable nor an explicit path opens copy B beside
 * it; naming A (through a link) uses it. */
static void scenario_second_copy(void) {
  void* framework = dlopen(g_fake_a, RTLD_NOW | RTLD_GLOBAL);
  CHECK(framework != NULL, "the framework's copy A: %s", dlerror());
  char reason[2 * kMessageCapacity];
  snprintf(reason, sizeof reason,
           "another libnccl.so.2 is loaded in this process already, from '%s', and a second "
           "NCCL copy beside it is not opened (name that file, or load NCCL before the other "
           "library does)",
           g_fake_a);
  char expected[4 * kMessageCapacity];

  setenv("BARACUDA_NCCL_LIBRARY", g_fake_b, 1);
  CHECK(baracuda_nccl_load(NULL) == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "variable B beside A");
  snprintf(expected, sizeof expected,
           "nccl_load: cannot load NCCL (got BARACUDA_NCCL_LIBRARY '%s': %s, expected "
           "BARACUDA_NCCL_LIBRARY to name libnccl.so.2, the only place tried while it is set)",
           g_fake_b, reason);
  CHECK(strcmp(baracuda_last_error_message(), expected) == 0, "message: %s",
        baracuda_last_error_message());

  CHECK(baracuda_nccl_load(g_fake_b) == BARACUDA_STATUS_LIBRARY_NOT_LOADED, "path B beside A");
  snprintf(expected, sizeof expected,
           "nccl_load: cannot load NCCL (got explicit path '%s': %s, expected that path to be "
           "libnccl.so.2)",
           g_fake_b, reason);
  CHECK(strcmp(baracuda_last_error_message(), expected) == 0, "message: %s",
        baracuda_last_error_message());
  CHECK(strcmp(baracuda_nccl_library_path(), "") == 0, "nothing loaded after the refusals");
  void* opened_b = dlopen(g_fake_b, RTLD_NOW | RTLD_NOLOAD);
  CHECK(opened_b == NULL, "copy B was never opened");
  if (opened_b != NULL) dlclose(opened_b);

  char link[kMessageCapacity];
  link_to(g_fake_a, link, sizeof link);
  setenv("BARACUDA_NCCL_LIBRARY", link, 1);
  CHECK(baracuda_nccl_load(NULL) == BARACUDA_STATUS_SUCCESS, "variable: a link to A: %s",
        baracuda_last_error_message());
  remove_link(link);
  expect_version(kFakeVersionA);
  CHECK(strcmp(baracuda_nccl_library_path(), g_fake_a) == 0, "path %s",
        baracuda_nccl_library_path());
  unsetenv("BARACUDA_NCCL_LIBRARY");
}

/* comm_wait: an NCCL asynchronous error aborts (not with _no_abort); a CUDA error of the
 * stream query does not; NaN and -inf timeouts are refused before anything is called. */
static void scenario_wait(void) {
  CHECK(baracuda_nccl_load(g_fake_a) == BARACUDA_STATUS_SUCCESS, "load A: %s",
        baracuda_last_error_message());
  int* async_error = fake_variable(g_fake_a, "fake_nccl_async_error");
  int* aborts = fake_variable(g_fake_a, "fake_nccl_abort_count");
  if (async_error == NULL || aborts == NULL) return;
  baracuda_nccl_unique_id id;
  baracuda_nccl_comm comm = NULL;
  CHECK(baracuda_nccl_get_unique_id(&id) == BARACUDA_STATUS_SUCCESS, "unique id");
  CHECK(baracuda_nccl_comm_init_rank(&comm, kOneRankWorld, &id, kRankZero) ==
                BARACUDA_STATUS_SUCCESS &&
            comm != NULL,
        "stand-in communicator: %s", baracuda_last_error_message());

  static const double kBadTimeouts[] = {NAN, -INFINITY};
  for (size_t n = 0; n < sizeof kBadTimeouts / sizeof kBadTimeouts[0]; ++n) {
    char expected[kMessageCapacity];
    snprintf(expected, sizeof expected,
             "nccl_comm_wait: timeout_seconds is not a duration (got %g, expected seconds: > 0 "
             "and finite for a limit, +inf or <= 0 for none)",
             kBadTimeouts[n]);
    CHECK(baracuda_nccl_comm_wait(comm, NULL, kBadTimeouts[n]) == BARACUDA_STATUS_INVALID_PROBLEM,
          "timeout %g refused", kBadTimeouts[n]);
    CHECK(strcmp(baracuda_last_error_message(), expected) == 0, "message: %s",
          baracuda_last_error_message());
    CHECK(baracuda_nccl_comm_wait_no_abort(comm, NULL, kBadTimeouts[n]) ==
              BARACUDA_STATUS_INVALID_PROBLEM,
          "timeout %g refused by _no_abort", kBadTimeouts[n]);
    CHECK(starts_with(baracuda_last_error_message(),
                      "nccl_comm_wait_no_abort: timeout_seconds is not a duration (got "),
          "message: %s", baracuda_last_error_message());
  }
  CHECK(*aborts == 0, "refused timeouts abort nothing (%d aborts)", *aborts);

  /* No NCCL error: the legacy default stream is idle with a device; without one the query
   * fails, a CUDA error that leaves the communicator alone. */
  *async_error = 0;
  baracuda_status status = baracuda_nccl_comm_wait(comm, NULL, INFINITY);
  if (status == BARACUDA_STATUS_SUCCESS) {
    printf("comm_wait on a device: the default stream is idle\n");
  } else {
    CHECK(status == BARACUDA_STATUS_CUDA_ERROR, "wait without a device: status %d (%s)",
          (int)status, baracuda_last_error_message());
    CHECK(starts_with(baracuda_last_error_message(),
                      "nccl_comm_wait: cudaStreamQuery of the waited stream failed (got "),
          "message: %s", baracuda_last_error_message());
  }
  CHECK(*aborts == 0, "no abort without an NCCL error (%d aborts)", *aborts);

  enum { kRemoteError = 6 };
  *async_error = kRemoteError;
  status = baracuda_nccl_comm_wait_no_abort(comm, NULL, INFINITY);
  CHECK(status == BARACUDA_STATUS_NCCL_ERROR, "_no_abort on an NCCL error: status %d", (int)status);
  CHECK(strcmp(baracuda_last_error_message(),
               "nccl_comm_wait_no_abort: the communicator's pending work (the communicator was "
               "left to its owner) failed (got ncclRemoteError = 6: fake NCCL error; NCCL's "
               "last error: none recorded, expected ncclSuccess)") == 0,
        "message: %s", baracuda_last_error_message());
  CHECK(*aborts == 0, "_no_abort aborts nothing (%d aborts)", *aborts);
  CHECK(baracuda_nccl_comm_check(comm) == BARACUDA_STATUS_NCCL_ERROR && *aborts == 0,
        "comm_check reports and aborts nothing");

  status = baracuda_nccl_comm_wait(comm, NULL, INFINITY);
  CHECK(status == BARACUDA_STATUS_NCCL_ERROR, "wait on an NCCL error: status %d", (int)status);
  CHECK(strcmp(baracuda_last_error_message(),
               "nccl_comm_wait: the communicator's pending work (the communicator was aborted) "
               "failed (got ncclRemoteError = 6: fake NCCL error; NCCL's last error: none "
               "recorded, expected ncclSuccess)") == 0,
        "message: %s", baracuda_last_error_message());
  CHECK(*aborts == 1, "wait aborts on an NCCL error (%d aborts, expected 1)", *aborts);
}

/* ------------------------------------------------------------------ scenarios */

/* No NCCL loaded and none named: the refusals, then the search order (and, when it finds no
 * NCCL, the wrappers' refusals). */
static void scenario_refusals(void) {
  test_not_loaded_yet();
  test_bad_explicit_path();
  test_not_an_nccl_library();
  test_empty_path();
  test_long_path_message();
  test_comm_null_pointers();
  if (!test_search_order()) test_comm_without_nccl();
}

/* A real NCCL named by BARACUDA_TEST_NCCL_LIBRARY (else the one the search order finds). */
static void scenario_real_nccl(void) {
  const char* library = getenv("BARACUDA_TEST_NCCL_LIBRARY");
  baracuda_status status =
      library != NULL && *library != '\0' ? baracuda_nccl_load(library) : baracuda_nccl_load(NULL);
  if (status != BARACUDA_STATUS_SUCCESS) {
    CHECK(library == NULL || *library == '\0', "explicit %s: %s", library,
          baracuda_last_error_message());
    printf("NCCL-present checks skipped: no NCCL here and BARACUDA_TEST_NCCL_LIBRARY unset\n");
    return;
  }
  test_loaded();
  test_comm_null_pointers();
  test_unique_ids();
  if (cuda_device_present()) {
    test_one_rank_communicator();
  } else {
    printf("one-rank communicator checks skipped: they need a CUDA device\n");
  }
}

typedef struct {
  const char* name;
  void (*run)(void);
  int needs_fakes;
} scenario;

static const scenario kScenarios[] = {
    {"refusals", scenario_refusals, 0},
    {"variable_only", test_variable_is_the_only_candidate, 0},
    {"second_load", scenario_second_load, 1},
    {"variable_loads", scenario_variable_loads, 1},
    {"second_copy", scenario_second_copy, 1},
    {"wait", scenario_wait, 1},
    {"real_nccl", scenario_real_nccl, 0},
};
enum { kScenarioCount = sizeof kScenarios / sizeof kScenarios[0] };

/* Runs one scenario in this process. */
static int run_scenario(const char* name) {
  for (int n = 0; n < kScenarioCount; ++n) {
    if (strcmp(kScenarios[n].name, name) == 0) {
      kScenarios[n].run();
      return test_summary();
    }
  }
  fprintf(stderr, "unknown scenario %s\n", name);
  return 1;
}

/* Runs each scenario in a fresh process of this program. */
static int run_all(void) {
  const int have_fakes = *g_fake_a != '\0' && *g_fake_b != '\0';
  for (int n = 0; n < kScenarioCount; ++n) {
    if (kScenarios[n].needs_fakes && !have_fakes) {
      printf("scenario %s skipped: the stand-in NCCL libraries were not given\n",
             kScenarios[n].name);
      continue;
    }
    printf("-- scenario %s\n", kScenarios[n].name);
    fflush(stdout);
    const pid_t child = fork();
    if (child == 0) {
      char* const arguments[] = {"test_nccl_loader", (char*)g_fake_a, (char*)g_fake_b,
                                 (char*)kScenarios[n].name, NULL};
      execv("/proc/self/exe", arguments);
      _exit(127);
    }
    int wait_status = 0;
    CHECK(child > 0 && waitpid(child, &wait_status, 0) == child, "scenario %s started",
          kScenarios[n].name);
    CHECK(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0,
          "scenario %s failed (wait status %d)", kScenarios[n].name, wait_status);
  }
  return test_summary();
}

int main(int argc, char** argv) {
  if (argc >= 3) {
    g_fake_a = argv[1];
    g_fake_b = argv[2];
  }
  if (argc >= 4) return run_scenario(argv[3]);
  return run_all();
}
