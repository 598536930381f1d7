/*
 * The NCCL loader: refusals name each place tried, in the documented order, and why it
 * failed; with an NCCL present (the wheel or the system's), loading succeeds, reports its path
 * and version, and stays loaded. Needs no GPU.
 */
#define _POSIX_C_SOURCE 200809L
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

int main(void) {
  test_not_loaded_yet();
  test_bad_explicit_path();
  test_not_an_nccl_library();
  int found = test_search_order();
  const char* wheel_library = getenv("BARACUDA_TEST_NCCL_LIBRARY");
  if (!found && wheel_library != NULL && *wheel_library != '\0') {
    CHECK(baracuda_nccl_load(wheel_library) == BARACUDA_STATUS_SUCCESS, "explicit %s: %s",
          wheel_library, baracuda_last_error_message());
    found = 1;
  }
  if (found) test_loaded();
  else printf("NCCL-present checks skipped: no NCCL here and BARACUDA_TEST_NCCL_LIBRARY unset\n");
  return test_summary();
}
