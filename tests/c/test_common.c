/*
 * What every op shares, plain C, no CUDA header: the status, element and backend strings, the
 * element sizes, the version, and the thread's last error before any call has failed. The
 * ops' own checks are test_flash_sdpa.c's and test_ring_attention.c's.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <baracuda/baracuda.h>

#include "test_check.h"

/* ------------------------------------------------------------------ last error */

/* A thread that has made no failing call has no reason and no sizes, and the calls below,
 * which cannot fail, leave it so. Runs first, before any other baracuda call. */
static void expect_no_last_error(int line, const char* when) {
  int64_t needed = -1;
  int64_t got = -1;
  baracuda_last_error_sizes(&needed, &got);
  check_str_at(__FILE__, line, baracuda_last_error_message(), "", when);
  CHECK_AT(__FILE__, line, needed == 0 && got == 0, "%s: sizes (got needed %lld, got %lld)", when,
           (long long)needed, (long long)got);
}

/* ------------------------------------------------------------------ strings */

static void test_status_strings(void) {
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_SUCCESS), "success");
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_UNSUPPORTED), "unsupported");
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_INVALID_PROBLEM), "invalid problem");
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_BUFFER_TOO_SMALL), "buffer too small");
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_WORKSPACE_TOO_SMALL), "workspace too small");
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_CUDA_ERROR), "CUDA error");
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_NCCL_ERROR), "NCCL error");
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_LIBRARY_NOT_LOADED), "library not loaded");
  CHECK_STR(baracuda_status_string(BARACUDA_STATUS_INTERNAL), "internal error");
  CHECK_STR(baracuda_status_string((baracuda_status)9), "unknown status");
  CHECK_STR(baracuda_status_string((baracuda_status)-1), "unknown status");
}

static void test_element_strings_and_sizes(void) {
  CHECK_STR(baracuda_element_string(BARACUDA_ELEMENT_F32), "f32");
  CHECK_STR(baracuda_element_string(BARACUDA_ELEMENT_F16), "f16");
  CHECK_STR(baracuda_element_string(BARACUDA_ELEMENT_BF16), "bf16");
  CHECK_STR(baracuda_element_string(BARACUDA_ELEMENT_F64), "f64");
  CHECK_STR(baracuda_element_string((baracuda_element)0), "invalid");
  CHECK_STR(baracuda_element_string((baracuda_element)5), "invalid");
  CHECK_STR(baracuda_element_string((baracuda_element)-1), "invalid");

  CHECK_INT(baracuda_element_size(BARACUDA_ELEMENT_F32), 4);
  CHECK_INT(baracuda_element_size(BARACUDA_ELEMENT_F16), 2);
  CHECK_INT(baracuda_element_size(BARACUDA_ELEMENT_BF16), 2);
  CHECK_INT(baracuda_element_size(BARACUDA_ELEMENT_F64), 8);
  CHECK_INT(baracuda_element_size((baracuda_element)0), 0);
  CHECK_INT(baracuda_element_size((baracuda_element)5), 0);
}

static void test_backend_strings(void) {
  CHECK_STR(baracuda_backend_string(BARACUDA_BACKEND_AUTO), "auto");
  CHECK_STR(baracuda_backend_string(BARACUDA_BACKEND_PORTABLE), "portable");
  CHECK_STR(baracuda_backend_string(BARACUDA_BACKEND_HOPPER), "hopper");
  CHECK_STR(baracuda_backend_string((baracuda_backend)3), "invalid");
  CHECK_STR(baracuda_backend_string((baracuda_backend)-1), "invalid");
}

/* Reads a run of decimal digits; returns the character after it, or NULL if there is none. */
static const char* skip_number(const char* text) {
  const char* end = text;
  while (*end >= '0' && *end <= '9') ++end;
  return end != text ? end : NULL;
}

static int is_version_triple(const char* text) {
  if (text == NULL) return 0;
  const char* cursor = skip_number(text);
  if (cursor == NULL || *cursor != '.') return 0;
  cursor = skip_number(cursor + 1);
  if (cursor == NULL || *cursor != '.') return 0;
  cursor = skip_number(cursor + 1);
  return cursor != NULL && *cursor == '\0';
}

static void test_version(void) {
  const char* version = baracuda_version();
  CHECK(is_version_triple(version), "baracuda_version is MAJOR.MINOR.PATCH (got \"%s\")",
        text_or_null(version));
  CHECK(!is_version_triple("0.1"), "\"0.1\" is not a version triple");
  CHECK(!is_version_triple("0.1.0-dev"), "\"0.1.0-dev\" is not a version triple");
  CHECK(!is_version_triple("0..1"), "\"0..1\" is not a version triple");
}

/* ------------------------------------------------------------------ main */

int main(void) {
  expect_no_last_error(__LINE__, "no message before any call");
  test_status_strings();
  test_element_strings_and_sizes();
  test_backend_strings();
  test_version();
  expect_no_last_error(__LINE__, "no message after the string, size and version calls");
  return test_summary();
}
