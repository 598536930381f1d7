// The C ABI's barrier against C++ exceptions (baracuda::guard) and the thread's message: an
// exception of any kind becomes BARACUDA_STATUS_INTERNAL with its reason, and a message of any
// length comes back whole. Built from the library's own status source, since guard is internal.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "baracuda/baracuda.h"
#include "common/status.h"

namespace {

int g_failed = 0;
int g_passed = 0;

void check(bool ok, const char* what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::fprintf(stderr, "FAILED: %s\n    message: \"%s\"\n", what, baracuda_last_error_message());
  }
}

bool message_is(const char* expected) {
  return std::strcmp(baracuda_last_error_message(), expected) == 0;
}

constexpr const char* kOp = "guard_test";

void test_exceptions_become_internal() {
  baracuda_status status =
      baracuda::guard(kOp, []() -> baracuda_status { throw std::bad_alloc(); });
  check(status == BARACUDA_STATUS_INTERNAL, "bad_alloc gives INTERNAL");
  check(message_is("guard_test: host allocation failed (got std::bad_alloc, expected memory for "
                   "the call)"),
        "bad_alloc message");

  status = baracuda::guard(
      kOp, []() -> baracuda_status { throw std::runtime_error("a reason of its own"); });
  check(status == BARACUDA_STATUS_INTERNAL, "std::exception gives INTERNAL");
  check(message_is("guard_test: unexpected C++ exception (got \"a reason of its own\", expected "
                   "none)"),
        "std::exception message carries what()");

  status = baracuda::guard(kOp, []() -> baracuda_status { throw 42; });
  check(status == BARACUDA_STATUS_INTERNAL, "a thrown int gives INTERNAL");
  check(message_is("guard_test: unexpected C++ exception (got one of unknown type, expected "
                   "none)"),
        "unknown exception message");

  // A body that returns passes its status through, and its message.
  status = baracuda::guard(kOp, [] {
    return baracuda::fail(BARACUDA_STATUS_UNSUPPORTED, kOp, "a refusal (got 1, expected 2)");
  });
  check(status == BARACUDA_STATUS_UNSUPPORTED, "a returned status passes through");
  check(message_is("guard_test: a refusal (got 1, expected 2)"), "a returned message stays");
  status = baracuda::guard(kOp, [] { return baracuda::succeed(); });
  check(status == BARACUDA_STATUS_SUCCESS && message_is(""), "success clears the message");
}

void test_messages_of_any_length() {
  constexpr size_t kLong = 5000;  // beyond any fixed buffer the library once had (1024)
  const std::string reason(kLong, 'x');
  baracuda::fail(BARACUDA_STATUS_LIBRARY_NOT_LOADED, kOp, "%s (got it, expected it)",
                 reason.c_str());
  const std::string expected = std::string(kOp) + ": " + reason + " (got it, expected it)";
  check(baracuda_last_error_message() == expected, "a 5000-character message comes back whole");
  int64_t needed = -1, got = -1;
  baracuda_last_error_sizes(&needed, &got);
  check(needed == 0 && got == 0, "fail clears the sizes");
  baracuda::fail_with_sizes(BARACUDA_STATUS_BUFFER_TOO_SMALL, 7, 3, kOp,
                            "short (got 3, expected 7)");
  baracuda_last_error_sizes(&needed, &got);
  check(needed == 7 && got == 3 && message_is("guard_test: short (got 3, expected 7)"),
        "fail_with_sizes records the sizes and the message");
}

}  // namespace

int main() {
  test_exceptions_become_internal();
  test_messages_of_any_length();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
