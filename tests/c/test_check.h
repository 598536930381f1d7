/* The small check harness of the C tests: CHECK(condition, printf-style reason) counts a pass
 * or prints the failure with its place; test_summary() prints "N passed, M failed" and gives
 * the exit code. */
#ifndef BARACUDA_TEST_CHECK_H
#define BARACUDA_TEST_CHECK_H

#include <stdio.h>

static int g_failures = 0;
static int g_passes = 0;

#define CHECK(condition, ...)                                 \
  do {                                                        \
    if (condition) {                                          \
      ++g_passes;                                             \
    } else {                                                  \
      ++g_failures;                                           \
      fprintf(stderr, "%s:%d: FAILED: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                           \
      fprintf(stderr, "\n");                                  \
    }                                                         \
  } while (0)

static int test_summary(void) {
  printf("%d passed, %d failed\n", g_passes, g_failures);
  return g_failures == 0 ? 0 : 1;
}

#endif /* BARACUDA_TEST_CHECK_H */
