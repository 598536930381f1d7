/*
 * A minimal C consumer of an installed baracuda: the version, a status string, and a
 * descriptor that select must refuse with its exact message. Exits 0 only if all is as
 * expected. Needs no CUDA device: the refusal comes before the device is looked at.
 */
#include <stdio.h>
#include <string.h>

#include <baracuda/baracuda.h>

static int g_failures = 0;

static void expect_string(const char* what, const char* got, const char* expected) {
  if (got != NULL && strcmp(got, expected) == 0) return;
  ++g_failures;
  fprintf(stderr, "%s: got \"%s\", expected \"%s\"\n", what, got != NULL ? got : "(NULL)",
          expected);
}

int main(void) {
  printf("baracuda %s\n", baracuda_version());
  expect_string("baracuda_version", baracuda_version(), BARACUDA_CONSUMER_EXPECTED_VERSION);
  expect_string("baracuda_status_string", baracuda_status_string(BARACUDA_STATUS_INVALID_PROBLEM),
                "invalid problem");

  baracuda_flash_sdpa_descriptor desc;
  baracuda_flash_sdpa_descriptor_init(&desc, 1, 1, 1, 1, -1, 64, BARACUDA_ELEMENT_F32);
  baracuda_flash_sdpa_plan plan = NULL;
  const baracuda_status status = baracuda_flash_sdpa_plan_select(&desc, NULL, &plan);
  if (status != BARACUDA_STATUS_INVALID_PROBLEM) {
    ++g_failures;
    fprintf(stderr, "select with d_k = -1: got status %s, expected %s\n",
            baracuda_status_string(status),
            baracuda_status_string(BARACUDA_STATUS_INVALID_PROBLEM));
  }
  expect_string("select message", baracuda_last_error_message(),
                "flash_sdpa_plan_select: d_k must be non-negative (got -1, expected >= 0)");
  if (plan != NULL) {
    ++g_failures;
    fprintf(stderr, "select with d_k = -1 left a plan (got non-NULL, expected NULL)\n");
    baracuda_flash_sdpa_plan_destroy(plan);
  }

  printf("%s\n", g_failures == 0 ? "consumer: ok" : "consumer: FAILED");
  return g_failures == 0 ? 0 : 1;
}
