/* The check harness of the C tests. Each check counts one pass, or one failure that it prints
 * with its place ("file:line: FAILED: ..."), and gives back whether it passed, so that a test
 * can add detail or stop when one fails. test_summary() prints "N passed, M failed" and gives
 * the exit code.
 *
 *   CHECK(condition, printf-style reason)   the reason is formatted only when the check fails
 *   CHECK_INT(got, expected)                integers, both printed when they differ
 *   CHECK_STR(got, expected)                strings (got may be NULL, which never matches)
 *   CHECK_PREFIX(got, prefix), CHECK_SUFFIX(got, suffix)
 *
 * The _at forms take the place to report, for helpers that check on behalf of their caller. */
#ifndef BARACUDA_TEST_CHECK_H
#define BARACUDA_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define TEST_CHECK_PRINTF(format_index, first_arg) \
  __attribute__((format(printf, format_index, first_arg)))
#else
#define TEST_CHECK_PRINTF(format_index, first_arg)
#endif

static int g_failures = 0;
static int g_passes = 0;

static inline int check_pass(void) {
  ++g_passes;
  return 1;
}

/* Counts a failure and prints its place and reason; gives back 0. */
static inline TEST_CHECK_PRINTF(3, 4) int check_fail_at(const char* file, int line,
                                                        const char* format, ...) {
  ++g_failures;
  fprintf(stderr, "%s:%d: FAILED: ", file, line);
  va_list arguments;
  va_start(arguments, format);
  vfprintf(stderr, format, arguments);
  va_end(arguments);
  fprintf(stderr, "\n");
  return 0;
}

#define CHECK_AT(file, line, condition, ...) \
  ((condition) ? check_pass() : check_fail_at((file), (line), __VA_ARGS__))
#define CHECK(condition, ...) CHECK_AT(__FILE__, __LINE__, condition, __VA_ARGS__)

static inline int starts_with(const char* text, const char* prefix) {
  return text != NULL && strncmp(text, prefix, strlen(prefix)) == 0;
}

static inline int ends_with(const char* text, const char* suffix) {
  if (text == NULL) return 0;
  const size_t length = strlen(text);
  const size_t suffix_length = strlen(suffix);
  return length >= suffix_length && strcmp(text + length - suffix_length, suffix) == 0;
}

static inline const char* text_or_null(const char* text) {
  return text != NULL ? text : "(NULL)";
}

static inline int check_int_at(const char* file, int line, long long got, long long expected,
                               const char* what) {
  return CHECK_AT(file, line, got == expected, "%s (got %lld, expected %lld)", what, got, expected);
}

static inline int check_str_at(const char* file, int line, const char* got, const char* expected,
                               const char* what) {
  return CHECK_AT(file, line, got != NULL && strcmp(got, expected) == 0,
                  "%s\n    got      \"%s\"\n    expected \"%s\"", what, text_or_null(got),
                  expected);
}

static inline int check_prefix_at(const char* file, int line, const char* got, const char* prefix,
                                  const char* what) {
  return CHECK_AT(file, line, starts_with(got, prefix),
                  "%s\n    got             \"%s\"\n    expected prefix \"%s\"", what,
                  text_or_null(got), prefix);
}

static inline int check_suffix_at(const char* file, int line, const char* got, const char* suffix,
                                  const char* what) {
  return CHECK_AT(file, line, ends_with(got, suffix),
                  "%s\n    got             \"%s\"\n    expected suffix \"%s\"", what,
                  text_or_null(got), suffix);
}

#define CHECK_INT(got, expected) \
  check_int_at(__FILE__, __LINE__, (long long)(got), (long long)(expected), #got " == " #expected)
#define CHECK_STR(got, expected) \
  check_str_at(__FILE__, __LINE__, (got), (expected), #got " == " #expected)
#define CHECK_PREFIX(got, prefix) \
  check_prefix_at(__FILE__, __LINE__, (got), (prefix), #got " starts with " #prefix)
#define CHECK_SUFFIX(got, suffix) \
  check_suffix_at(__FILE__, __LINE__, (got), (suffix), #got " ends with " #suffix)

static inline int test_summary(void) {
  printf("%d passed, %d failed\n", g_passes, g_failures);
  return g_failures == 0 ? 0 : 1;
}

#endif /* BARACUDA_TEST_CHECK_H */
