/*
 * Flash SDPA plan, C API, no CUDA header: descriptor defaults, every descriptor check of
 * baracuda_flash_sdpa_plan_select, the head-dim buckets, the NULL checks of the plan functions,
 * and every argument check of can_implement, check_args and run, each with its exact status
 * and message. What every op shares (status, element and backend strings, version) is
 * test_common.c's.
 *
 * The test finds out whether a CUDA device is present from the status of a valid select
 * (success, or a CUDA error from cudaGetDevice). With one, each argument check runs through
 * can_implement and check_args on a selected plan; without one, through check_args alone on a
 * stand-in plan's descriptor, and the test says what it skipped (can_implement, run and the
 * plan queries need a real plan).
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <baracuda/baracuda.h>

#include "test_backend_rule.h"
#include "test_check.h"
#include "test_plans.h"

/* ------------------------------------------------------------------ shared values */

static const baracuda_element kElements[] = {BARACUDA_ELEMENT_F32, BARACUDA_ELEMENT_F16,
                                             BARACUDA_ELEMENT_BF16, BARACUDA_ELEMENT_F64};
enum { kElementCount = sizeof(kElements) / sizeof(kElements[0]) };

/* The head dims every backend supports: multiples of kHeadDimStep in [kMinHeadDim, kMaxHeadDim]. */
enum { kMinHeadDim = 8, kMaxHeadDim = 256, kHeadDimStep = 8 };

/* Query rows of one portable block: the descriptor's grid is B x H x ceil(Sq / this). */
enum { kPortableBlockRows = 16 };
static const int64_t kMaxGridBlocks = INT_MAX;

/* The problem of the argument checks: B, H, Sq, Sk, Dk, Dv, with GQA groups of two. */
enum { kBatch = 2, kHeads = 4, kHeadsK = 2, kQueryLen = 5, kKeyLen = 7, kDk = 64, kDv = 32 };

enum { kMessageCapacity = 1024 };

static const char kNoDeviceMessagePrefix[] =
    "flash_sdpa_plan_select: cudaGetDevice (is a CUDA device present?) failed (got ";
static const char kCudaErrorMessageSuffix[] = ", expected cudaSuccess)";

/* Whether a CUDA device is present, as select reports it. */
static int g_device_present = 0;

/* A non-NULL plan handle that select must overwrite; never dereferenced. */
static max_align_t g_not_a_plan;
#define NOT_A_PLAN ((baracuda_flash_sdpa_plan)(void*)&g_not_a_plan)

static baracuda_element lse_element_of(baracuda_element element) {
  return element == BARACUDA_ELEMENT_F64 ? BARACUDA_ELEMENT_F64 : BARACUDA_ELEMENT_F32;
}

static baracuda_flash_sdpa_descriptor make_descriptor(baracuda_element element) {
  baracuda_flash_sdpa_descriptor desc;
  baracuda_flash_sdpa_descriptor_init(&desc, kBatch, kHeads, kQueryLen, kKeyLen, kDk, kDv, element);
  return desc;
}

/* Leaves a known, non-empty message and zero sizes, so that each check below sees what the
 * call under test wrote. */
static void poison_last_error(void) {
  baracuda_flash_sdpa_plan_select(NULL, NULL, NULL);
}

static void expect_no_sizes_at(const char* file, int line) {
  int64_t needed = -1;
  int64_t got = -1;
  baracuda_last_error_sizes(&needed, &got);
  check_int_at(file, line, needed, 0, "baracuda_last_error_sizes needed is 0");
  check_int_at(file, line, got, 0, "baracuda_last_error_sizes got is 0");
}

static void expect_sizes_at(const char* file, int line, int64_t expected_needed,
                            int64_t expected_got) {
  int64_t needed = -1;
  int64_t got = -1;
  baracuda_last_error_sizes(&needed, &got);
  check_int_at(file, line, needed, expected_needed, "baracuda_last_error_sizes needed");
  check_int_at(file, line, got, expected_got, "baracuda_last_error_sizes got");
}

static void expect_no_device_message_at(const char* file, int line) {
  const char* message = baracuda_last_error_message();
  check_prefix_at(file, line, message, kNoDeviceMessagePrefix, "no-device message");
  check_suffix_at(file, line, message, kCudaErrorMessageSuffix, "no-device message");
}

/* ------------------------------------------------------------------ select expectations */

/* Select refuses the descriptor: exact status and message, *plan set to NULL, no sizes. */
static void expect_select_refuses_at(const char* file, int line,
                                     const baracuda_flash_sdpa_descriptor* desc,
                                     const baracuda_plan_preference* preference,
                                     baracuda_status expected_status,
                                     const char* expected_message) {
  poison_last_error();
  baracuda_flash_sdpa_plan plan = NOT_A_PLAN;
  const baracuda_status status = baracuda_flash_sdpa_plan_select(desc, preference, &plan);
  check_int_at(file, line, status, expected_status, "plan_select status");
  check_str_at(file, line, baracuda_last_error_message(), expected_message, "plan_select message");
  CHECK_AT(file, line, plan == NULL, "plan_select sets *plan to NULL when it refuses");
  expect_no_sizes_at(file, line);
  if (plan != NULL && plan != NOT_A_PLAN) baracuda_flash_sdpa_plan_destroy(plan);
}

#define EXPECT_SELECT_REFUSES(desc, preference, status, message) \
  expect_select_refuses_at(__FILE__, __LINE__, (desc), (preference), (status), (message))

/* Select accepts the descriptor: a plan on a device; without one, the CUDA error of
 * cudaGetDevice, which select reaches only after every descriptor check has passed. */
static void expect_select_accepts_at(const char* file, int line,
                                     const baracuda_flash_sdpa_descriptor* desc,
                                     const baracuda_plan_preference* preference) {
  poison_last_error();
  baracuda_flash_sdpa_plan plan = NOT_A_PLAN;
  const baracuda_status status = baracuda_flash_sdpa_plan_select(desc, preference, &plan);
  if (g_device_present) {
    if (check_int_at(file, line, status, BARACUDA_STATUS_SUCCESS, "plan_select status")) {
      check_str_at(file, line, baracuda_last_error_message(), "",
                   "message is empty after a successful select");
      CHECK_AT(file, line, plan != NULL && plan != NOT_A_PLAN, "plan_select stores a plan");
      baracuda_kernel_sku sku;
      check_int_at(file, line, baracuda_flash_sdpa_sku(plan, &sku), BARACUDA_STATUS_SUCCESS,
                   "plan sku status");
      check_int_at(file, line, baracuda_flash_sdpa_backend(plan),
                   expected_backend(desc->element, sku.arch, preference), "plan backend");
    } else {
      fprintf(stderr, "    message: %s\n", baracuda_last_error_message());
    }
    if (plan != NULL && plan != NOT_A_PLAN) baracuda_flash_sdpa_plan_destroy(plan);
  } else {
    check_int_at(file, line, status, BARACUDA_STATUS_CUDA_ERROR, "plan_select status");
    expect_no_device_message_at(file, line);
    CHECK_AT(file, line, plan == NULL, "plan_select sets *plan to NULL when it fails");
    expect_no_sizes_at(file, line);
  }
}

#define EXPECT_SELECT_ACCEPTS(desc, preference) \
  expect_select_accepts_at(__FILE__, __LINE__, (desc), (preference))

/* ------------------------------------------------------------------ descriptor */

static void test_descriptor_init_defaults(void) {
  baracuda_flash_sdpa_descriptor desc;
  memset(&desc, 0xA5, sizeof desc);
  baracuda_flash_sdpa_descriptor_init(&desc, 3, 8, 17, 19, 64, 32, BARACUDA_ELEMENT_BF16);
  CHECK_INT(desc.batch_size, 3);
  CHECK_INT(desc.num_heads, 8);
  CHECK_INT(desc.query_len, 17);
  CHECK_INT(desc.key_len, 19);
  CHECK_INT(desc.d_k, 64);
  CHECK_INT(desc.d_v, 32);
  CHECK(desc.scale == 0.125, "scale is 1 / sqrt(d_k = 64) (got %g)", desc.scale);
  CHECK_INT(desc.is_causal, 0);
  CHECK_INT(desc.element, BARACUDA_ELEMENT_BF16);
  CHECK_INT(desc.window_size_left, BARACUDA_WINDOW_UNBOUNDED);
  CHECK_INT(desc.window_size_right, BARACUDA_WINDOW_UNBOUNDED);
  CHECK(desc.softcap == 0.0, "softcap is off (got %g)", desc.softcap);
  CHECK_INT(desc.alignment, BARACUDA_ALIGN_TOP_LEFT);

  /* The scale follows d_k, not d_v. */
  baracuda_flash_sdpa_descriptor_init(&desc, 1, 1, 1, 1, 16, 256, BARACUDA_ELEMENT_F32);
  CHECK(desc.scale == 0.25, "scale is 1 / sqrt(d_k = 16) (got %g)", desc.scale);
  baracuda_flash_sdpa_descriptor_init(&desc, 1, 1, 1, 1, 128, 128, BARACUDA_ELEMENT_F32);
  const double squared_error = desc.scale * desc.scale * 128.0 - 1.0;
  CHECK(squared_error < 1e-15 && squared_error > -1e-15, "scale is 1 / sqrt(d_k = 128) (got %.17g)",
        desc.scale);
  baracuda_flash_sdpa_descriptor_init(&desc, 1, 1, 1, 1, 0, 8, BARACUDA_ELEMENT_F32);
  CHECK(desc.scale == 1.0, "scale is 1 when d_k is 0 (got %g)", desc.scale);
}

/* Decides whether a device is present from a valid select, and checks what select says. */
static void detect_device(void) {
  const baracuda_flash_sdpa_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F16);
  baracuda_flash_sdpa_plan plan = NOT_A_PLAN;
  const baracuda_status status = baracuda_flash_sdpa_plan_select(&desc, NULL, &plan);
  if (status == BARACUDA_STATUS_SUCCESS) {
    g_device_present = 1;
    CHECK(plan != NULL && plan != NOT_A_PLAN, "a valid select stores a plan");
    CHECK_STR(baracuda_last_error_message(), "");
    baracuda_flash_sdpa_plan_destroy(plan);
    printf("a CUDA device is present: running the argument checks\n");
    return;
  }
  g_device_present = 0;
  CHECK_INT(status, BARACUDA_STATUS_CUDA_ERROR);
  expect_no_device_message_at(__FILE__, __LINE__);
  CHECK(plan == NULL, "plan_select sets *plan to NULL when it fails");
  expect_no_sizes_at(__FILE__, __LINE__);
  printf("no CUDA device (%s): select stops at cudaGetDevice\n", baracuda_last_error_message());
}

static void test_select_null_pointers(void) {
  const baracuda_flash_sdpa_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
  EXPECT_SELECT_REFUSES(NULL, NULL, BARACUDA_STATUS_INVALID_PROBLEM,
                        "flash_sdpa_plan_select: desc is NULL (got NULL, expected a descriptor)");

  /* No place to store the plan: refused before the descriptor is read. */
  const char* expected =
      "flash_sdpa_plan_select: plan is NULL (got NULL, expected a place to store the plan)";
  baracuda_flash_sdpa_plan unused = NOT_A_PLAN;
  CHECK_INT(baracuda_flash_sdpa_plan_select(NULL, NULL, &unused), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_INT(baracuda_flash_sdpa_plan_select(&desc, NULL, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(), expected);
  expect_no_sizes_at(__FILE__, __LINE__);
  CHECK_INT(baracuda_flash_sdpa_plan_select(NULL, NULL, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(), expected);
}

/* ------------------------------------------------------------------ select refusals */

/* Prefix of every select message. */
#define SELECT "flash_sdpa_plan_select: "

/* The statuses of the tables' refusals, short. */
#define INVALID BARACUDA_STATUS_INVALID_PROBLEM
#define UNSUPPORTED BARACUDA_STATUS_UNSUPPORTED
#define TOO_SMALL BARACUDA_STATUS_BUFFER_TOO_SMALL

/* The descriptor field a select case sets, or the preference's backend. */
typedef enum DescriptorField {
  kFieldElement,
  kFieldBatchSize,
  kFieldNumHeads,
  kFieldQueryLen,
  kFieldKeyLen,
  kFieldDk,
  kFieldDv,
  kFieldScale,
  kFieldSoftcap,
  kFieldIsCausal,
  kFieldWindowLeft,
  kFieldWindowRight,
  kFieldAlignment,
  kFieldPreferenceBackend
} DescriptorField;

/* One field of a valid descriptor set to one bad value, and select's refusal of it. */
typedef struct SelectCase {
  int line; /* of the case in its table, where a failing check is reported */
  const char* name;
  DescriptorField field;
  double value; /* integer fields take it converted; every value here is exact in double */
  baracuda_status status;
  const char* message;
} SelectCase;

static void set_descriptor_field(baracuda_flash_sdpa_descriptor* desc,
                                 baracuda_plan_preference* preference, DescriptorField field,
                                 double value) {
  switch (field) {
    case kFieldElement: desc->element = (baracuda_element)(int)value; break;
    case kFieldBatchSize: desc->batch_size = (int32_t)value; break;
    case kFieldNumHeads: desc->num_heads = (int32_t)value; break;
    case kFieldQueryLen: desc->query_len = (int32_t)value; break;
    case kFieldKeyLen: desc->key_len = (int32_t)value; break;
    case kFieldDk: desc->d_k = (int32_t)value; break;
    case kFieldDv: desc->d_v = (int32_t)value; break;
    case kFieldScale: desc->scale = value; break;
    case kFieldSoftcap: desc->softcap = value; break;
    case kFieldIsCausal: desc->is_causal = (int32_t)value; break;
    case kFieldWindowLeft: desc->window_size_left = (int32_t)value; break;
    case kFieldWindowRight: desc->window_size_right = (int32_t)value; break;
    case kFieldAlignment: desc->alignment = (baracuda_alignment)(int)value; break;
    case kFieldPreferenceBackend: preference->backend = (baracuda_backend)(int)value; break;
  }
}

/* Each case on an f32 descriptor, with no preference unless the case sets one; a failing case's
 * name follows the messages of its failed checks. */
static void expect_select_cases(const SelectCase* cases, size_t count) {
  for (size_t n = 0; n < count; ++n) {
    const SelectCase* c = &cases[n];
    baracuda_flash_sdpa_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
    baracuda_plan_preference preference = {BARACUDA_BACKEND_AUTO};
    set_descriptor_field(&desc, &preference, c->field, c->value);
    const int failures = g_failures;
    expect_select_refuses_at(__FILE__, c->line, &desc,
                             c->field == kFieldPreferenceBackend ? &preference : NULL, c->status,
                             c->message);
    if (g_failures != failures) fprintf(stderr, "    in select case \"%s\"\n", c->name);
  }
}

#define EXPECT_SELECT_CASES(cases) expect_select_cases((cases), sizeof(cases) / sizeof((cases)[0]))

/* Every descriptor field outside what select accepts, one at a time: the element, negative
 * extents, a non-finite scale, a negative or non-finite softcap, is_causal, the window bounds,
 * the alignment and the preference's backend outside their enums (all INVALID_PROBLEM), and
 * head dims that no backend supports (UNSUPPORTED). */
static void test_select_refuses_bad_descriptors(void) {
  static const SelectCase kCases[] = {
      {__LINE__, "element 0", kFieldElement, 0, INVALID,
       SELECT "element is not an element type (got 0, expected f32, f16, bf16 or f64)"},
      {__LINE__, "element 5", kFieldElement, 5, INVALID,
       SELECT "element is not an element type (got 5, expected f32, f16, bf16 or f64)"},
      {__LINE__, "element -1", kFieldElement, -1, INVALID,
       SELECT "element is not an element type (got -1, expected f32, f16, bf16 or f64)"},

      {__LINE__, "batch_size -1", kFieldBatchSize, -1, INVALID,
       SELECT "batch_size must be non-negative (got -1, expected >= 0)"},
      {__LINE__, "batch_size INT32_MIN", kFieldBatchSize, INT32_MIN, INVALID,
       SELECT "batch_size must be non-negative (got -2147483648, expected >= 0)"},
      {__LINE__, "num_heads -1", kFieldNumHeads, -1, INVALID,
       SELECT "num_heads must be non-negative (got -1, expected >= 0)"},
      {__LINE__, "num_heads INT32_MIN", kFieldNumHeads, INT32_MIN, INVALID,
       SELECT "num_heads must be non-negative (got -2147483648, expected >= 0)"},
      {__LINE__, "query_len -1", kFieldQueryLen, -1, INVALID,
       SELECT "query_len must be non-negative (got -1, expected >= 0)"},
      {__LINE__, "query_len INT32_MIN", kFieldQueryLen, INT32_MIN, INVALID,
       SELECT "query_len must be non-negative (got -2147483648, expected >= 0)"},
      {__LINE__, "key_len -1", kFieldKeyLen, -1, INVALID,
       SELECT "key_len must be non-negative (got -1, expected >= 0)"},
      {__LINE__, "key_len INT32_MIN", kFieldKeyLen, INT32_MIN, INVALID,
       SELECT "key_len must be non-negative (got -2147483648, expected >= 0)"},
      {__LINE__, "d_k -1", kFieldDk, -1, INVALID,
       SELECT "d_k must be non-negative (got -1, expected >= 0)"},
      {__LINE__, "d_k INT32_MIN", kFieldDk, INT32_MIN, INVALID,
       SELECT "d_k must be non-negative (got -2147483648, expected >= 0)"},
      {__LINE__, "d_v -1", kFieldDv, -1, INVALID,
       SELECT "d_v must be non-negative (got -1, expected >= 0)"},
      {__LINE__, "d_v INT32_MIN", kFieldDv, INT32_MIN, INVALID,
       SELECT "d_v must be non-negative (got -2147483648, expected >= 0)"},

      {__LINE__, "scale nan", kFieldScale, NAN, INVALID,
       SELECT "scale must be finite (got nan, expected a finite number)"},
      {__LINE__, "scale inf", kFieldScale, INFINITY, INVALID,
       SELECT "scale must be finite (got inf, expected a finite number)"},
      {__LINE__, "scale -inf", kFieldScale, -INFINITY, INVALID,
       SELECT "scale must be finite (got -inf, expected a finite number)"},

      {__LINE__, "softcap -1", kFieldSoftcap, -1.0, INVALID,
       SELECT "softcap must be finite and non-negative (got -1, expected 0 to disable or a "
              "finite value > 0)"},
      {__LINE__, "softcap -0.5", kFieldSoftcap, -0.5, INVALID,
       SELECT "softcap must be finite and non-negative (got -0.5, expected 0 to disable or a "
              "finite value > 0)"},
      {__LINE__, "softcap nan", kFieldSoftcap, NAN, INVALID,
       SELECT "softcap must be finite and non-negative (got nan, expected 0 to disable or a "
              "finite value > 0)"},
      {__LINE__, "softcap inf", kFieldSoftcap, INFINITY, INVALID,
       SELECT "softcap must be finite and non-negative (got inf, expected 0 to disable or a "
              "finite value > 0)"},
      {__LINE__, "softcap -inf", kFieldSoftcap, -INFINITY, INVALID,
       SELECT "softcap must be finite and non-negative (got -inf, expected 0 to disable or a "
              "finite value > 0)"},

      {__LINE__, "is_causal 2", kFieldIsCausal, 2, INVALID,
       SELECT "is_causal must be 0 or 1 (got 2, expected 0 or 1)"},
      {__LINE__, "is_causal -1", kFieldIsCausal, -1, INVALID,
       SELECT "is_causal must be 0 or 1 (got -1, expected 0 or 1)"},

      {__LINE__, "window_size_left -2", kFieldWindowLeft, -2, INVALID,
       SELECT "window_size_left must be a bound >= 0 or unbounded (got -2, expected >= 0 or "
              "BARACUDA_WINDOW_UNBOUNDED = -1)"},
      {__LINE__, "window_size_right -2", kFieldWindowRight, -2, INVALID,
       SELECT "window_size_right must be a bound >= 0 or unbounded (got -2, expected >= 0 or "
              "BARACUDA_WINDOW_UNBOUNDED = -1)"},
      {__LINE__, "window_size_left INT32_MIN", kFieldWindowLeft, INT32_MIN, INVALID,
       SELECT "window_size_left must be a bound >= 0 or unbounded (got -2147483648, expected "
              ">= 0 or BARACUDA_WINDOW_UNBOUNDED = -1)"},
      {__LINE__, "window_size_right INT32_MIN", kFieldWindowRight, INT32_MIN, INVALID,
       SELECT "window_size_right must be a bound >= 0 or unbounded (got -2147483648, expected "
              ">= 0 or BARACUDA_WINDOW_UNBOUNDED = -1)"},

      {__LINE__, "alignment 2", kFieldAlignment, 2, INVALID,
       SELECT "alignment is not an alignment (got 2, expected BARACUDA_ALIGN_TOP_LEFT or "
              "BARACUDA_ALIGN_BOTTOM_RIGHT)"},
      {__LINE__, "alignment -1", kFieldAlignment, -1, INVALID,
       SELECT "alignment is not an alignment (got -1, expected BARACUDA_ALIGN_TOP_LEFT or "
              "BARACUDA_ALIGN_BOTTOM_RIGHT)"},

      {__LINE__, "preference backend 3", kFieldPreferenceBackend, 3, INVALID,
       SELECT "preference backend is not a backend (got 3, expected BARACUDA_BACKEND_AUTO, "
              "BARACUDA_BACKEND_PORTABLE or BARACUDA_BACKEND_HOPPER)"},
      {__LINE__, "preference backend -1", kFieldPreferenceBackend, -1, INVALID,
       SELECT "preference backend is not a backend (got -1, expected BARACUDA_BACKEND_AUTO, "
              "BARACUDA_BACKEND_PORTABLE or BARACUDA_BACKEND_HOPPER)"},

      /* Below the smallest, off the step of 8, above the largest. */
      {__LINE__, "d_k 0", kFieldDk, 0, UNSUPPORTED,
       SELECT "d_k is not a supported head dim (got 0, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_v 0", kFieldDv, 0, UNSUPPORTED,
       SELECT "d_v is not a supported head dim (got 0, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_k 4", kFieldDk, 4, UNSUPPORTED,
       SELECT "d_k is not a supported head dim (got 4, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_v 4", kFieldDv, 4, UNSUPPORTED,
       SELECT "d_v is not a supported head dim (got 4, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_k 7", kFieldDk, 7, UNSUPPORTED,
       SELECT "d_k is not a supported head dim (got 7, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_v 7", kFieldDv, 7, UNSUPPORTED,
       SELECT "d_v is not a supported head dim (got 7, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_k 12", kFieldDk, 12, UNSUPPORTED,
       SELECT "d_k is not a supported head dim (got 12, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_v 12", kFieldDv, 12, UNSUPPORTED,
       SELECT "d_v is not a supported head dim (got 12, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_k 260", kFieldDk, 260, UNSUPPORTED,
       SELECT "d_k is not a supported head dim (got 260, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_v 260", kFieldDv, 260, UNSUPPORTED,
       SELECT "d_v is not a supported head dim (got 260, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_k 264", kFieldDk, 264, UNSUPPORTED,
       SELECT "d_k is not a supported head dim (got 264, expected a multiple of 8 in [8, 256])"},
      {__LINE__, "d_v 264", kFieldDv, 264, UNSUPPORTED,
       SELECT "d_v is not a supported head dim (got 264, expected a multiple of 8 in [8, 256])"},
  };
  EXPECT_SELECT_CASES(kCases);
}

/* Scale and softcap within the compute type's range: scale log2(e), softcap log2(e) and
 * scale / softcap finite there, and softcap a normal number (never rounded to 0, which is off). */
static void test_select_refuses_score_options_out_of_range(void) {
  const double kLog2e = 1.4426950408889634;
  const double f32_largest = FLT_MAX / kLog2e;
  const double f64_largest = DBL_MAX / kLog2e;
  const baracuda_element f32_computed[] = {BARACUDA_ELEMENT_F32, BARACUDA_ELEMENT_F16,
                                           BARACUDA_ELEMENT_BF16};
  for (size_t n = 0; n < sizeof(f32_computed) / sizeof(f32_computed[0]); ++n) {
    char expected[kMessageCapacity];
    baracuda_flash_sdpa_descriptor desc = make_descriptor(f32_computed[n]);
    desc.scale = -1e300;
    snprintf(expected, sizeof expected,
             "flash_sdpa_plan_select: scale overflows the f32 compute type (got -1e+300, "
             "expected |scale| <= %g)",
             f32_largest);
    EXPECT_SELECT_REFUSES(&desc, NULL, BARACUDA_STATUS_INVALID_PROBLEM, expected);

    const double softcaps[] = {1e-300, FLT_MIN / 2, 1e39};
    const char* texts[] = {"1e-300", "5.87747e-39", "1e+39"};
    for (size_t m = 0; m < sizeof(softcaps) / sizeof(softcaps[0]); ++m) {
      desc = make_descriptor(f32_computed[n]);
      desc.softcap = softcaps[m];
      snprintf(expected, sizeof expected,
               "flash_sdpa_plan_select: softcap is outside the range of the f32 compute type "
               "(got %s, expected 0 or a value in [%g, %g])",
               texts[m], FLT_MIN, f32_largest);
      EXPECT_SELECT_REFUSES(&desc, NULL, BARACUDA_STATUS_INVALID_PROBLEM, expected);
    }

    desc = make_descriptor(f32_computed[n]);
    desc.scale = 1e20;
    desc.softcap = 1e-20;
    snprintf(expected, sizeof expected,
             "flash_sdpa_plan_select: scale / softcap overflows the f32 compute type (got "
             "1e+20 / 1e-20, expected a quotient <= %g)",
             (double)FLT_MAX);
    EXPECT_SELECT_REFUSES(&desc, NULL, BARACUDA_STATUS_INVALID_PROBLEM, expected);

    /* At the edges: still inside. */
    desc = make_descriptor(f32_computed[n]);
    desc.scale = f32_largest;
    EXPECT_SELECT_ACCEPTS(&desc, NULL);
    desc = make_descriptor(f32_computed[n]);
    desc.scale = 1.0;
    desc.softcap = FLT_MIN;
    EXPECT_SELECT_ACCEPTS(&desc, NULL);
  }

  char expected[kMessageCapacity];
  baracuda_flash_sdpa_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F64);
  desc.softcap = DBL_MIN / 4;
  snprintf(expected, sizeof expected,
           "flash_sdpa_plan_select: softcap is outside the range of the f64 compute type (got "
           "%g, expected 0 or a value in [%g, %g])",
           DBL_MIN / 4, DBL_MIN, f64_largest);
  EXPECT_SELECT_REFUSES(&desc, NULL, BARACUDA_STATUS_INVALID_PROBLEM, expected);
  desc = make_descriptor(BARACUDA_ELEMENT_F64);
  desc.scale = 1e300;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);
}

static void test_select_grid_limit(void) {
  /* One block over the limit: INT32_MAX batches of two query tiles. */
  baracuda_flash_sdpa_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.batch_size = INT32_MAX;
  desc.num_heads = 1;
  desc.query_len = kPortableBlockRows + 1;
  char expected[kMessageCapacity];
  snprintf(expected, sizeof expected,
           "flash_sdpa_plan_select: batch_size x num_heads x query tiles of %d rows exceeds one "
           "launch (got %d x 1 x %d rows, expected <= %lld blocks)",
           kPortableBlockRows, INT32_MAX, kPortableBlockRows + 1, (long long)kMaxGridBlocks);
  EXPECT_SELECT_REFUSES(&desc, NULL, BARACUDA_STATUS_UNSUPPORTED, expected);

  /* The largest grid: exactly the limit. */
  desc.query_len = kPortableBlockRows;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  /* Every extent at its largest: the block count is far beyond int64 and must still be
   * refused. */
  desc.batch_size = INT32_MAX;
  desc.num_heads = INT32_MAX;
  desc.query_len = INT32_MAX;
  snprintf(expected, sizeof expected,
           "flash_sdpa_plan_select: batch_size x num_heads x query tiles of %d rows exceeds one "
           "launch (got %d x %d x %d rows, expected <= %lld blocks)",
           kPortableBlockRows, INT32_MAX, INT32_MAX, INT32_MAX, (long long)kMaxGridBlocks);
  poison_last_error();
  baracuda_flash_sdpa_plan plan = NOT_A_PLAN;
  const baracuda_status status = baracuda_flash_sdpa_plan_select(&desc, NULL, &plan);
  CHECK_INT(status, BARACUDA_STATUS_UNSUPPORTED);
  check_prefix_at(__FILE__, __LINE__, baracuda_last_error_message(), expected,
                  "grid limit message for extents whose block count overflows int64");
  CHECK(plan == NULL, "plan_select sets *plan to NULL when it refuses");
  if (plan != NULL && plan != NOT_A_PLAN) baracuda_flash_sdpa_plan_destroy(plan);
}

/* Descriptors at the edges of what the checks accept. */
static void test_select_accepts_valid_descriptors(void) {
  const baracuda_plan_preference automatic = {BARACUDA_BACKEND_AUTO};
  const baracuda_plan_preference portable = {BARACUDA_BACKEND_PORTABLE};
  baracuda_flash_sdpa_descriptor desc;

  for (int n = 0; n < kElementCount; ++n) {
    desc = make_descriptor(kElements[n]);
    EXPECT_SELECT_ACCEPTS(&desc, NULL);
    EXPECT_SELECT_ACCEPTS(&desc, &automatic);
    EXPECT_SELECT_ACCEPTS(&desc, &portable);
  }

  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.is_causal = 1;
  desc.window_size_left = 0;
  desc.window_size_right = 0;
  desc.softcap = 30.0;
  desc.alignment = BARACUDA_ALIGN_BOTTOM_RIGHT;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.window_size_left = INT32_MAX;
  desc.window_size_right = 3;
  desc.scale = -2.5;
  desc.softcap = -0.0;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  /* A softcap that is a normal f64 number, in the f64 compute type. */
  desc = make_descriptor(BARACUDA_ELEMENT_F64);
  desc.scale = 0.0;
  desc.softcap = 1e-300;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  /* Empty problems: every extent but the head dims may be 0. */
  int32_t* const extents[] = {&desc.batch_size, &desc.num_heads, &desc.query_len, &desc.key_len};
  for (size_t n = 0; n < sizeof(extents) / sizeof(extents[0]); ++n) {
    desc = make_descriptor(BARACUDA_ELEMENT_F16);
    *extents[n] = 0;
    EXPECT_SELECT_ACCEPTS(&desc, NULL);
  }

  /* The head dim limits, on each side. */
  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.d_k = kMinHeadDim;
  desc.d_v = kMinHeadDim;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);
}

/* ------------------------------------------------------------------ head-dim buckets */

/* What one build compiled for one element, as the bucket refusals list it. */
typedef struct BucketList {
  int known; /* a refusal has listed the buckets */
  int count;
  int buckets[kMaxHeadDim];
} BucketList;

/* Parses "64, 128" (possibly empty) into list; returns 0 when the text is not such a list. */
static int parse_bucket_list(const char* text, size_t length, BucketList* list) {
  list->count = 0;
  size_t at = 0;
  while (at < length) {
    if (list->count > 0) {
      if (length - at < 2 || text[at] != ',' || text[at + 1] != ' ') return 0;
      at += 2;
    }
    int value = 0;
    size_t digits = 0;
    while (at < length && text[at] >= '0' && text[at] <= '9' && digits < 4) {
      value = value * 10 + (text[at] - '0');
      ++at;
      ++digits;
    }
    if (digits == 0 || list->count == kMaxHeadDim) return 0;
    list->buckets[list->count++] = value;
  }
  return 1;
}

static int same_bucket_list(const BucketList* a, const BucketList* b) {
  if (a->count != b->count) return 0;
  for (int n = 0; n < a->count; ++n) {
    if (a->buckets[n] != b->buckets[n]) return 0;
  }
  return 1;
}

/* Checks a bucket refusal of head dim `head_dim` and merges its list into `list`. */
static void check_bucket_refusal(baracuda_element element, int head_dim, BucketList* list) {
  char prefix[kMessageCapacity];
  char suffix[kMessageCapacity];
  snprintf(prefix, sizeof prefix,
           "flash_sdpa_plan_select: no portable %s instance covers head dim %d in this build "
           "(got buckets [",
           baracuda_element_string(element), head_dim);
  snprintf(suffix, sizeof suffix, "], expected one >= %d; see BARACUDA_HEAD_DIM_BUCKETS)",
           head_dim);
  const char* message = baracuda_last_error_message();
  if (!check_prefix_at(__FILE__, __LINE__, message, prefix, "bucket refusal message") ||
      !check_suffix_at(__FILE__, __LINE__, message, suffix, "bucket refusal message")) {
    return;
  }
  const size_t list_length = strlen(message) - strlen(prefix) - strlen(suffix);
  BucketList parsed;
  if (!CHECK(parse_bucket_list(message + strlen(prefix), list_length, &parsed),
             "bucket refusal lists buckets as \"a, b, ...\" (message: %s)", message)) {
    return;
  }
  int ascending_below = 1;
  for (int n = 0; n < parsed.count; ++n) {
    if (parsed.buckets[n] >= head_dim) ascending_below = 0;
    if (n > 0 && parsed.buckets[n] <= parsed.buckets[n - 1]) ascending_below = 0;
  }
  CHECK(ascending_below, "the listed buckets ascend, all below head dim %d", head_dim);
  if (list->known) {
    CHECK(same_bucket_list(list, &parsed), "every bucket refusal lists the same buckets");
  } else {
    *list = parsed;
    list->known = 1;
  }
}

/* The smallest listed bucket covering head_dim, or 0. */
static int covering_bucket(const BucketList* list, int head_dim) {
  for (int n = 0; n < list->count; ++n) {
    if (list->buckets[n] >= head_dim) return list->buckets[n];
  }
  return 0;
}

/* Every supported head dim, on d_k and on d_v, for every element: the build either has a
 * bucket covering it (select goes on to the device) or refuses it with the build's bucket
 * list. The list is not known to this test (BARACUDA_HEAD_DIM_BUCKETS), so it is read from
 * the refusals, which must all agree and must refuse exactly the head dims above the largest
 * bucket. On a device the plan's bucket is the smallest covering one. */
static void test_select_head_dim_buckets(void) {
  enum { kSteps = kMaxHeadDim / kHeadDimStep };
  int refusals = 0;
  for (int e = 0; e < kElementCount; ++e) {
    const baracuda_element element = kElements[e];
    BucketList list;
    memset(&list, 0, sizeof list);
    int refused[kSteps + 1];
    int plan_bucket[kSteps + 1];
    memset(plan_bucket, 0, sizeof plan_bucket);
    for (int step = 1; step <= kSteps; ++step) {
      const int head_dim = step * kHeadDimStep;
      int outcome[2];
      for (int side = 0; side < 2; ++side) {
        baracuda_flash_sdpa_descriptor desc;
        baracuda_flash_sdpa_descriptor_init(&desc, 1, 2, 3, 4, side == 0 ? head_dim : kMinHeadDim,
                                            side == 0 ? kMinHeadDim : head_dim, element);
        poison_last_error();
        baracuda_flash_sdpa_plan plan = NOT_A_PLAN;
        const baracuda_status status = baracuda_flash_sdpa_plan_select(&desc, NULL, &plan);
        outcome[side] = status;
        if (status == BARACUDA_STATUS_UNSUPPORTED) {
          check_bucket_refusal(element, head_dim, &list);
          CHECK(plan == NULL, "plan_select sets *plan to NULL when it refuses");
        } else if (g_device_present) {
          if (CHECK_INT(status, BARACUDA_STATUS_SUCCESS)) {
            baracuda_kernel_sku sku;
            memset(&sku, 0, sizeof sku);
            CHECK_INT(baracuda_flash_sdpa_sku(plan, &sku), BARACUDA_STATUS_SUCCESS);
            CHECK(sku.head_dim_bucket >= head_dim, "bucket %d covers head dim %d",
                  (int)sku.head_dim_bucket, head_dim);
            if (side == 1) CHECK_INT(sku.head_dim_bucket, plan_bucket[step]);
            plan_bucket[step] = sku.head_dim_bucket;
            baracuda_flash_sdpa_plan_destroy(plan);
          } else {
            fprintf(stderr, "    %s d%d: %s\n", baracuda_element_string(element), head_dim,
                    baracuda_last_error_message());
          }
        } else {
          CHECK_INT(status, BARACUDA_STATUS_CUDA_ERROR);
          expect_no_device_message_at(__FILE__, __LINE__);
        }
      }
      /* The larger head dim decides, whichever side it is on. */
      CHECK_INT(outcome[1], outcome[0]);
      refused[step] = outcome[0] == BARACUDA_STATUS_UNSUPPORTED;
      refusals += refused[step];
    }
    if (!list.known) continue;
    const int largest = list.count > 0 ? list.buckets[list.count - 1] : 0;
    for (int step = 1; step <= kSteps; ++step) {
      const int head_dim = step * kHeadDimStep;
      CHECK_INT(refused[step], head_dim > largest);
      if (g_device_present && !refused[step]) {
        CHECK_INT(plan_bucket[step], covering_bucket(&list, head_dim));
      }
    }
  }
  printf("head-dim buckets: %d of %d selects refused by this build's bucket list\n", refusals,
         kElementCount * kSteps);
}

/* ------------------------------------------------------------------ NULL plans */

static void test_null_plan_functions(void) {
  baracuda_flash_sdpa_args args;
  memset(&args, 0, sizeof args);

  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_can_implement(NULL, &args), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_can_implement: plan is NULL (got NULL, expected a plan)");
  expect_no_sizes_at(__FILE__, __LINE__);

  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_can_implement(NULL, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_can_implement: plan is NULL (got NULL, expected a plan)");

  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_run(NULL, &args, NULL, 0, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_run: plan is NULL (got NULL, expected a plan)");
  expect_no_sizes_at(__FILE__, __LINE__);

  poison_last_error();
  size_t bytes = 12345;
  CHECK_INT(baracuda_flash_sdpa_workspace_size(NULL, &bytes), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_workspace_size: plan and bytes must not be NULL (got NULL, expected "
            "pointers)");
  CHECK_INT(baracuda_flash_sdpa_workspace_size(NULL, NULL), BARACUDA_STATUS_INVALID_PROBLEM);

  poison_last_error();
  baracuda_kernel_sku sku;
  CHECK_INT(baracuda_flash_sdpa_sku(NULL, &sku), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_sku: plan and sku must not be NULL (got NULL, expected pointers)");
  CHECK_INT(baracuda_flash_sdpa_sku(NULL, NULL), BARACUDA_STATUS_INVALID_PROBLEM);

  poison_last_error();
  baracuda_precision_guarantee guarantee;
  CHECK_INT(baracuda_flash_sdpa_precision_guarantee(NULL, &guarantee),
            BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_precision_guarantee: plan and guarantee must not be NULL (got NULL, "
            "expected pointers)");
  CHECK_INT(baracuda_flash_sdpa_precision_guarantee(NULL, NULL), BARACUDA_STATUS_INVALID_PROBLEM);

  /* No plan has no backend; destroying no plan does nothing. */
  CHECK_INT(baracuda_flash_sdpa_backend(NULL), BARACUDA_BACKEND_AUTO);
  baracuda_flash_sdpa_plan_destroy(NULL);
}

/* ------------------------------------------------------------------ argument checks (device) */

static void set_strides(baracuda_tensor* tensor, int64_t s0, int64_t s1, int64_t s2, int64_t s3) {
  const int64_t strides[BARACUDA_MAX_RANK] = {s0, s1, s2, s3};
  for (int axis = 0; axis < BARACUDA_MAX_RANK; ++axis) {
    tensor->strides[axis] = axis < tensor->rank ? strides[axis] : 0;
  }
}

enum { kBufferQ, kBufferK, kBufferV, kBufferY, kBufferLse, kBufferMask, kBufferSlopes };

/* Contiguous Q, K, V, Y, LSE for the plan's descriptor with heads_k K/V heads; no mask, no
 * ALiBi. */
static baracuda_flash_sdpa_args make_args(const baracuda_flash_sdpa_descriptor* d,
                                          int64_t heads_k) {
  const int64_t q_shape[4] = {d->batch_size, d->num_heads, d->query_len, d->d_k};
  const int64_t k_shape[4] = {d->batch_size, heads_k, d->key_len, d->d_k};
  const int64_t v_shape[4] = {d->batch_size, heads_k, d->key_len, d->d_v};
  const int64_t y_shape[4] = {d->batch_size, d->num_heads, d->query_len, d->d_v};
  const int64_t lse_shape[3] = {d->batch_size, d->num_heads, d->query_len};
  baracuda_flash_sdpa_args args;
  memset(&args, 0, sizeof args);
  args.q = contiguous_tensor(kBufferQ, d->element, 4, q_shape);
  args.k = contiguous_tensor(kBufferK, d->element, 4, k_shape);
  args.v = contiguous_tensor(kBufferV, d->element, 4, v_shape);
  args.y = contiguous_tensor(kBufferY, d->element, 4, y_shape);
  args.lse = contiguous_tensor(kBufferLse, lse_element_of(d->element), 3, lse_shape);
  return args;
}

static baracuda_tensor make_mask(int64_t b, int64_t h, int64_t i, int64_t j) {
  const int64_t shape[4] = {b, h, i, j};
  return contiguous_tensor(kBufferMask, BARACUDA_ELEMENT_F32, 4, shape);
}

static baracuda_tensor make_slopes(int64_t b, int64_t h) {
  const int64_t shape[2] = {b, h};
  return contiguous_tensor(kBufferSlopes, BARACUDA_ELEMENT_F32, 2, shape);
}

static const baracuda_flash_sdpa_descriptor* descriptor_of(baracuda_flash_sdpa_plan plan) {
  return (const baracuda_flash_sdpa_descriptor*)test_plan_descriptor(plan);
}

static int is_stand_in(baracuda_flash_sdpa_plan plan) {
  return test_plan_is_stand_in(plan);
}

/* A plan for desc (test_plans.h): selected with a device, a stand-in without one. */
static baracuda_flash_sdpa_plan select_plan(const baracuda_flash_sdpa_descriptor* desc) {
  baracuda_flash_sdpa_plan plan = NULL;
  if (g_device_present) {
    const baracuda_status status = baracuda_flash_sdpa_plan_select(desc, NULL, &plan);
    if (!CHECK_INT(status, BARACUDA_STATUS_SUCCESS)) {
      fprintf(stderr, "    message: %s\n", baracuda_last_error_message());
      return NULL;
    }
  }
  void* registered = test_plan_register(plan, desc, sizeof *desc);
  if (!CHECK(registered != NULL, "a free plan slot (of %d)", kMaxTestPlans)) {
    baracuda_flash_sdpa_plan_destroy(plan);
    return NULL;
  }
  return (baracuda_flash_sdpa_plan)registered;
}

static void release_plan(baracuda_flash_sdpa_plan plan) {
  if (test_plan_forget(plan)) baracuda_flash_sdpa_plan_destroy(plan);
}

/* The prefix of can_implement's messages, and of check_args' for the same checks. */
static const char kCanImplementPrefix[] = "flash_sdpa_can_implement: ";
static const char kCheckArgsPrefix[] = "flash_sdpa_check_args: ";

/* Each of the two calls that check args: can_implement on the plan (unless it is a stand-in),
 * then check_args on its descriptor. */
enum { kCanImplementCall, kCheckArgsCall, kArgsCalls };

static int call_applies(baracuda_flash_sdpa_plan plan, int call) {
  return call == kCheckArgsCall || !is_stand_in(plan);
}

static baracuda_status check_args_with(int call, baracuda_flash_sdpa_plan plan,
                                       const baracuda_flash_sdpa_args* args) {
  if (call == kCanImplementCall) return baracuda_flash_sdpa_can_implement(plan, args);
  return baracuda_flash_sdpa_check_args(descriptor_of(plan), args);
}

/* expected, a can_implement message, as the given call words it. */
static const char* message_for(int call, const char* expected, char* buffer, size_t capacity) {
  const size_t prefix = sizeof kCanImplementPrefix - 1;
  if (call == kCanImplementCall || strncmp(expected, kCanImplementPrefix, prefix) != 0) {
    return expected;
  }
  snprintf(buffer, capacity, "%s%s", kCheckArgsPrefix, expected + prefix);
  return buffer;
}

/* The status of can_implement, and that check_args agrees with it. */
static baracuda_status args_status_at(const char* file, int line, baracuda_flash_sdpa_plan plan,
                                      const baracuda_flash_sdpa_args* args) {
  baracuda_status first = BARACUDA_STATUS_SUCCESS;
  int seen = 0;
  for (int call = 0; call < kArgsCalls; ++call) {
    if (!call_applies(plan, call)) continue;
    const baracuda_status status = check_args_with(call, plan, args);
    if (!seen) first = status;
    seen = 1;
    check_int_at(file, line, status, first, "check_args agrees with can_implement");
  }
  return first;
}

#define ARGS_STATUS(plan, args) args_status_at(__FILE__, __LINE__, (plan), (args))

static void expect_args_accepted_at(const char* file, int line, baracuda_flash_sdpa_plan plan,
                                    const baracuda_flash_sdpa_args* args) {
  for (int call = 0; call < kArgsCalls; ++call) {
    if (!call_applies(plan, call)) continue;
    poison_last_error();
    const baracuda_status status = check_args_with(call, plan, args);
    if (!check_int_at(file, line, status, BARACUDA_STATUS_SUCCESS, "can_implement status")) {
      fprintf(stderr, "    message: %s\n", baracuda_last_error_message());
      continue;
    }
    check_str_at(file, line, baracuda_last_error_message(), "",
                 "message is empty after a successful can_implement");
    expect_no_sizes_at(file, line);
  }
}

/* can_implement refuses args with status and message; no sizes. run refuses them alike. */
static void expect_args_refused_at(const char* file, int line, baracuda_flash_sdpa_plan plan,
                                   const baracuda_flash_sdpa_args* args,
                                   baracuda_status expected_status, const char* expected_message) {
  for (int call = 0; call < kArgsCalls; ++call) {
    if (!call_applies(plan, call)) continue;
    char buffer[kMessageCapacity];
    poison_last_error();
    check_int_at(file, line, check_args_with(call, plan, args), expected_status,
                 "can_implement status");
    check_str_at(file, line, baracuda_last_error_message(),
                 message_for(call, expected_message, buffer, sizeof buffer),
                 "can_implement message");
    expect_no_sizes_at(file, line);
  }
}

/* can_implement refuses a buffer smaller than its view, with the sizes. */
static void expect_buffer_too_small_at(const char* file, int line, baracuda_flash_sdpa_plan plan,
                                       const baracuda_flash_sdpa_args* args,
                                       const char* expected_message, int64_t needed, int64_t got) {
  for (int call = 0; call < kArgsCalls; ++call) {
    if (!call_applies(plan, call)) continue;
    char buffer[kMessageCapacity];
    poison_last_error();
    check_int_at(file, line, check_args_with(call, plan, args), BARACUDA_STATUS_BUFFER_TOO_SMALL,
                 "can_implement status");
    check_str_at(file, line, baracuda_last_error_message(),
                 message_for(call, expected_message, buffer, sizeof buffer),
                 "can_implement message");
    expect_sizes_at(file, line, needed, got);
  }
}

#define EXPECT_ACCEPTED(plan, args) expect_args_accepted_at(__FILE__, __LINE__, (plan), (args))
#define EXPECT_INVALID(plan, args, message)                                                   \
  expect_args_refused_at(__FILE__, __LINE__, (plan), (args), BARACUDA_STATUS_INVALID_PROBLEM, \
                         (message))
#define EXPECT_UNSUPPORTED(plan, args, message) \
  expect_args_refused_at(__FILE__, __LINE__, (plan), (args), BARACUDA_STATUS_UNSUPPORTED, (message))
#define EXPECT_BUFFER_TOO_SMALL(plan, args, message, needed, got) \
  expect_buffer_too_small_at(__FILE__, __LINE__, (plan), (args), (message), (needed), (got))

/* Prefix of every can_implement message. */
#define CI "flash_sdpa_can_implement: "

/* ------------------------------------------------------------------ argument cases */

/* The tensors of the args, as the cases name them. */
typedef enum TensorName { kQ, kK, kV, kY, kLse, kMask, kSlopes } TensorName;

/* One change to one tensor of the args. */
typedef enum EditKind {
  kNoEdit, /* the end of a case's edits */
  kSetRank,
  kSetElement,
  kSetShape,  /* of the axis */
  kSetStride, /* of the axis */
  kSetNullData,
  kAddBuffer,   /* buffer_elements += value */
  kScaleBuffer, /* buffer_elements *= value */
  kSetBuffer
} EditKind;

typedef struct TensorEdit {
  EditKind kind;
  TensorName tensor;
  int axis;
  int64_t value;
} TensorEdit;

#define RANK(tensor, rank) {kSetRank, (tensor), 0, (rank)}
#define ELEMENT(tensor, element) {kSetElement, (tensor), 0, (element)}
#define SHAPE(tensor, axis, extent) {kSetShape, (tensor), (axis), (extent)}
#define STRIDE(tensor, axis, stride) {kSetStride, (tensor), (axis), (stride)}
#define NULL_DATA(tensor) {kSetNullData, (tensor), 0, 0}
#define ADD_BUFFER(tensor, elements) {kAddBuffer, (tensor), 0, (elements)}
#define SCALE_BUFFER(tensor, factor) {kScaleBuffer, (tensor), 0, (factor)}
#define SET_BUFFER(tensor, elements) {kSetBuffer, (tensor), 0, (elements)}

/* The full mask, [B, H, Sq, Sk], as a case's starting mask. */
#define FULL_MASK {kBatch, kHeads, kQueryLen, kKeyLen}

enum { kMaxEdits = 2 };

/* Valid args spoilt in one way, and the refusal of can_implement (and check_args, and run). A
 * case starts from the valid args, with a contiguous mask and ALiBi slopes of the given shapes
 * when these are not all 0 (no case uses an empty one), then applies its edits in order. */
typedef struct ArgsCase {
  int line; /* of the case in its table, where a failing check is reported */
  const char* name;
  baracuda_status status;
  const char* message;
  TensorEdit edits[kMaxEdits];
  int64_t mask[4];
  int64_t slopes[2];
  int64_t needed; /* the sizes of a BUFFER_TOO_SMALL refusal */
  int64_t got;
} ArgsCase;

static baracuda_tensor* tensor_of(baracuda_flash_sdpa_args* args, TensorName name) {
  switch (name) {
    case kQ: return &args->q;
    case kK: return &args->k;
    case kV: return &args->v;
    case kY: return &args->y;
    case kLse: return &args->lse;
    case kMask: return &args->mask;
    case kSlopes: return &args->alibi_slopes;
  }
  return NULL;
}

static void apply_edit(baracuda_flash_sdpa_args* args, const TensorEdit* edit) {
  baracuda_tensor* const tensor = tensor_of(args, edit->tensor);
  switch (edit->kind) {
    case kNoEdit: break;
    case kSetRank: tensor->rank = (int32_t)edit->value; break;
    case kSetElement: tensor->element = (baracuda_element)edit->value; break;
    case kSetShape: tensor->shape[edit->axis] = edit->value; break;
    case kSetStride: tensor->strides[edit->axis] = edit->value; break;
    case kSetNullData: tensor->data = NULL; break;
    case kAddBuffer: tensor->buffer_elements += edit->value; break;
    case kScaleBuffer: tensor->buffer_elements *= edit->value; break;
    case kSetBuffer: tensor->buffer_elements = edit->value; break;
  }
}

static int has_extents(const int64_t* shape, int rank) {
  for (int axis = 0; axis < rank; ++axis) {
    if (shape[axis] != 0) return 1;
  }
  return 0;
}

/* Each case on `valid`, through the expect helpers; a failing case's name follows the messages
 * of its failed checks. */
static void expect_args_cases(baracuda_flash_sdpa_plan plan, const baracuda_flash_sdpa_args* valid,
                              const ArgsCase* cases, size_t count) {
  for (size_t n = 0; n < count; ++n) {
    const ArgsCase* c = &cases[n];
    baracuda_flash_sdpa_args args = *valid;
    if (has_extents(c->mask, 4)) {
      args.mask = make_mask(c->mask[0], c->mask[1], c->mask[2], c->mask[3]);
    }
    if (has_extents(c->slopes, 2)) args.alibi_slopes = make_slopes(c->slopes[0], c->slopes[1]);
    for (int e = 0; e < kMaxEdits; ++e) apply_edit(&args, &c->edits[e]);
    const int failures = g_failures;
    if (c->status == BARACUDA_STATUS_BUFFER_TOO_SMALL) {
      expect_buffer_too_small_at(__FILE__, c->line, plan, &args, c->message, c->needed, c->got);
    } else {
      expect_args_refused_at(__FILE__, c->line, plan, &args, c->status, c->message);
    }
    if (g_failures != failures) fprintf(stderr, "    in args case \"%s\"\n", c->name);
  }
}

#define EXPECT_ARGS_CASES(plan, valid, cases) \
  expect_args_cases((plan), (valid), (cases), sizeof(cases) / sizeof((cases)[0]))

/* Q [2, 4, 5, 64], K [2, 2, 7, 64], V [2, 2, 7, 32], Y [2, 4, 5, 32], LSE [2, 4, 5]. */
static void test_args_ranks_elements_shapes(baracuda_flash_sdpa_plan plan,
                                            const baracuda_flash_sdpa_descriptor* desc) {
  const baracuda_flash_sdpa_args valid = make_args(desc, kHeadsK);
  EXPECT_ACCEPTED(plan, &valid);

  /* Each tensor's rank, element and extents, one at a time, against the descriptor: Q, K, V,
   * Y of rank 4 in the plan's element, LSE of rank 3; every shape as above. */
  static const ArgsCase kCases[] = {
      {__LINE__, "q rank 3", INVALID, CI "q rank mismatch (got 3, expected 4)",
       .edits = {RANK(kQ, 3)}},
      {__LINE__, "q rank 0", INVALID, CI "q rank mismatch (got 0, expected 4)",
       .edits = {RANK(kQ, 0)}},
      {__LINE__, "k rank 3", INVALID, CI "k rank mismatch (got 3, expected 4)",
       .edits = {RANK(kK, 3)}},
      {__LINE__, "v rank 3", INVALID, CI "v rank mismatch (got 3, expected 4)",
       .edits = {RANK(kV, 3)}},
      {__LINE__, "y rank 2", INVALID, CI "y rank mismatch (got 2, expected 4)",
       .edits = {RANK(kY, 2)}},
      {__LINE__, "lse rank 4", INVALID, CI "lse rank mismatch (got 4, expected 3)",
       .edits = {RANK(kLse, 4)}},

      {__LINE__, "q f32", INVALID, CI "q element mismatch (got f32, expected f16)",
       .edits = {ELEMENT(kQ, BARACUDA_ELEMENT_F32)}},
      {__LINE__, "k bf16", INVALID, CI "k element mismatch (got bf16, expected f16)",
       .edits = {ELEMENT(kK, BARACUDA_ELEMENT_BF16)}},
      {__LINE__, "v f64", INVALID, CI "v element mismatch (got f64, expected f16)",
       .edits = {ELEMENT(kV, BARACUDA_ELEMENT_F64)}},
      {__LINE__, "y element 0", INVALID, CI "y element mismatch (got invalid, expected f16)",
       .edits = {ELEMENT(kY, 0)}},

      {__LINE__, "q batch 3", INVALID,
       CI "q shape mismatch (got [3, 4, 5, 64], expected [2, 4, 5, 64])",
       .edits = {SHAPE(kQ, 0, 3)}},
      {__LINE__, "q heads Hk", INVALID,
       CI "q shape mismatch (got [2, 2, 5, 64], expected [2, 4, 5, 64])",
       .edits = {SHAPE(kQ, 1, kHeadsK)}},
      {__LINE__, "q rows Sk", INVALID,
       CI "q shape mismatch (got [2, 4, 7, 64], expected [2, 4, 5, 64])",
       .edits = {SHAPE(kQ, 2, kKeyLen)}},
      {__LINE__, "q head dim Dv", INVALID,
       CI "q shape mismatch (got [2, 4, 5, 32], expected [2, 4, 5, 64])",
       .edits = {SHAPE(kQ, 3, kDv)}},
      {__LINE__, "k batch 1", INVALID,
       CI "k shape mismatch (got [1, 2, 7, 64], expected [2, 2, 7, 64])",
       .edits = {SHAPE(kK, 0, 1)}},
      {__LINE__, "k rows Sq", INVALID,
       CI "k shape mismatch (got [2, 2, 5, 64], expected [2, 2, 7, 64])",
       .edits = {SHAPE(kK, 2, kQueryLen)}},
      {__LINE__, "k head dim Dv", INVALID,
       CI "k shape mismatch (got [2, 2, 7, 32], expected [2, 2, 7, 64])",
       .edits = {SHAPE(kK, 3, kDv)}},
      {__LINE__, "v heads 1", INVALID,
       CI "v shape mismatch (got [2, 1, 7, 32], expected [2, 2, 7, 32])",
       .edits = {SHAPE(kV, 1, 1)}},
      {__LINE__, "v rows Sq", INVALID,
       CI "v shape mismatch (got [2, 2, 5, 32], expected [2, 2, 7, 32])",
       .edits = {SHAPE(kV, 2, kQueryLen)}},
      {__LINE__, "v head dim Dk", INVALID,
       CI "v shape mismatch (got [2, 2, 7, 64], expected [2, 2, 7, 32])",
       .edits = {SHAPE(kV, 3, kDk)}},
      {__LINE__, "y heads Hk", INVALID,
       CI "y shape mismatch (got [2, 2, 5, 32], expected [2, 4, 5, 32])",
       .edits = {SHAPE(kY, 1, kHeadsK)}},
      {__LINE__, "y head dim Dk", INVALID,
       CI "y shape mismatch (got [2, 4, 5, 64], expected [2, 4, 5, 32])",
       .edits = {SHAPE(kY, 3, kDk)}},
      {__LINE__, "lse heads Hk", INVALID,
       CI "lse shape mismatch (got [2, 2, 5], expected [2, 4, 5])",
       .edits = {SHAPE(kLse, 1, kHeadsK)}},
      {__LINE__, "lse rows Sk", INVALID,
       CI "lse shape mismatch (got [2, 4, 7], expected [2, 4, 5])",
       .edits = {SHAPE(kLse, 2, kKeyLen)}},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);
}

static void test_args_heads_k(baracuda_flash_sdpa_plan plan,
                              const baracuda_flash_sdpa_descriptor* desc) {
  /* MHA, GQA and MQA by an extent-1 head axis. */
  const int64_t divisors[] = {kHeads, kHeadsK, 1};
  for (size_t n = 0; n < sizeof(divisors) / sizeof(divisors[0]); ++n) {
    const baracuda_flash_sdpa_args args = make_args(desc, divisors[n]);
    EXPECT_ACCEPTED(plan, &args);
  }

  const struct {
    int64_t heads_k;
    const char* message;
  } refused[] = {
      {3, CI "k shape[1] (num_heads_k) must divide num_heads (got 3, expected a divisor of 4)"},
      {8, CI "k shape[1] (num_heads_k) must divide num_heads (got 8, expected a divisor of 4)"},
      {0, CI "k shape[1] (num_heads_k) must divide num_heads (got 0, expected a divisor of 4)"},
      {-2, CI "k shape[1] (num_heads_k) must divide num_heads (got -2, expected a divisor of 4)"},
  };
  for (size_t n = 0; n < sizeof(refused) / sizeof(refused[0]); ++n) {
    baracuda_flash_sdpa_args args = make_args(desc, kHeadsK);
    args.k.shape[1] = refused[n].heads_k;
    EXPECT_INVALID(plan, &args, refused[n].message);
  }
}

/* MQA by a stride-0 head axis of extent H: K and V must both use it, and the buffers need
 * hold only the physical span, B x Sk x D. */
static void test_args_head_broadcast(baracuda_flash_sdpa_plan plan,
                                     const baracuda_flash_sdpa_descriptor* desc) {
  const int64_t k_span = kBatch * kKeyLen * kDk;
  const int64_t v_span = kBatch * kKeyLen * kDv;
  baracuda_flash_sdpa_args broadcast = make_args(desc, kHeads);
  set_strides(&broadcast.k, kKeyLen * kDk, 0, kDk, 1);
  set_strides(&broadcast.v, kKeyLen * kDv, 0, kDv, 1);
  broadcast.k.buffer_elements = k_span;
  broadcast.v.buffer_elements = v_span;
  CHECK(k_span < element_count(4, broadcast.k.shape),
        "the broadcast span is smaller than the view's element count");
  EXPECT_ACCEPTED(plan, &broadcast);

  baracuda_flash_sdpa_args args = broadcast;
  args.k.buffer_elements = k_span - 1;
  EXPECT_BUFFER_TOO_SMALL(plan, &args,
                          CI "k buffer too small (got 895 elements, expected at least 896)", k_span,
                          k_span - 1);
  args = broadcast;
  args.v.buffer_elements = v_span - 1;
  EXPECT_BUFFER_TOO_SMALL(plan, &args,
                          CI "v buffer too small (got 447 elements, expected at least 448)", v_span,
                          v_span - 1);

  /* K broadcasts H heads, V holds one: they disagree on the head count. */
  const baracuda_flash_sdpa_args one_head = make_args(desc, 1);
  args = broadcast;
  args.v = one_head.v;
  EXPECT_INVALID(plan, &args,
                 CI
                 "k and v disagree on the head-broadcast convention (got k heads 4 with "
                 "stride 0 and v heads 1 with stride 224, expected the same heads: both "
                 "[B, 4] with stride 0, or both [B, Hk])");
  args = broadcast;
  args.k = one_head.k;
  EXPECT_INVALID(plan, &args,
                 CI
                 "k and v disagree on the head-broadcast convention (got k heads 1 with stride "
                 "448 and v heads 4 with stride 0, expected the same heads: both [B, 4] with "
                 "stride 0, or both [B, Hk])");
}

static void test_args_strides(baracuda_flash_sdpa_plan plan,
                              const baracuda_flash_sdpa_descriptor* desc) {
  const baracuda_flash_sdpa_args valid = make_args(desc, kHeadsK);
  baracuda_flash_sdpa_args args;

  /* Negative strides; a last axis of Q, K, V, Y that is not contiguous (with a buffer large
   * enough for the view, so that only the stride is wrong); written tensors that broadcast. */
  static const ArgsCase kCases[] = {
      {__LINE__, "q batch stride negated", INVALID,
       CI "q stride of axis 0 is negative (got -1280, expected >= 0)",
       .edits = {STRIDE(kQ, 0, -(kHeads * kQueryLen * kDk))}},
      {__LINE__, "k row stride -1", INVALID,
       CI "k stride of axis 2 is negative (got -1, expected >= 0)", .edits = {STRIDE(kK, 2, -1)}},
      {__LINE__, "v head stride -224", INVALID,
       CI "v stride of axis 1 is negative (got -224, expected >= 0)",
       .edits = {STRIDE(kV, 1, -224)}},
      {__LINE__, "y batch stride -1", INVALID,
       CI "y stride of axis 0 is negative (got -1, expected >= 0)", .edits = {STRIDE(kY, 0, -1)}},
      {__LINE__, "lse row stride -1", INVALID,
       CI "lse stride of axis 2 is negative (got -1, expected >= 0)",
       .edits = {STRIDE(kLse, 2, -1)}},

      {__LINE__, "q last stride 2", UNSUPPORTED,
       CI "q last-axis stride must be 1 (got 2, expected 1)",
       .edits = {STRIDE(kQ, 3, 2), SCALE_BUFFER(kQ, 2)}},
      {__LINE__, "k last stride 2", UNSUPPORTED,
       CI "k last-axis stride must be 1 (got 2, expected 1)",
       .edits = {STRIDE(kK, 3, 2), SCALE_BUFFER(kK, 2)}},
      {__LINE__, "v last stride 2", UNSUPPORTED,
       CI "v last-axis stride must be 1 (got 2, expected 1)",
       .edits = {STRIDE(kV, 3, 2), SCALE_BUFFER(kV, 2)}},
      {__LINE__, "y last stride 2", UNSUPPORTED,
       CI "y last-axis stride must be 1 (got 2, expected 1)",
       .edits = {STRIDE(kY, 3, 2), SCALE_BUFFER(kY, 2)}},
      {__LINE__, "q last stride 0", UNSUPPORTED,
       CI "q last-axis stride must be 1 (got 0, expected 1)", .edits = {STRIDE(kQ, 3, 0)}},

      {__LINE__, "y head stride 0", INVALID,
       CI "y is written, so axis 1 (extent 4) cannot broadcast (got stride 0, expected > 0)",
       .edits = {STRIDE(kY, 1, 0)}},
      {__LINE__, "y last stride 0", INVALID,
       CI "y is written, so axis 3 (extent 32) cannot broadcast (got stride 0, expected > 0)",
       .edits = {STRIDE(kY, 3, 0)}},
      {__LINE__, "lse batch stride 0", INVALID,
       CI "lse is written, so axis 0 (extent 2) cannot broadcast (got stride 0, expected > 0)",
       .edits = {STRIDE(kLse, 0, 0)}},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);

  /* LSE may have any positive strides, its last axis included. */
  args = valid;
  args.lse.strides[0] = 40;
  args.lse.strides[1] = 10;
  args.lse.strides[2] = 2;
  args.lse.buffer_elements = 1 + 40 + 3 * 10 + 4 * 2;
  EXPECT_ACCEPTED(plan, &args);
  args.lse.buffer_elements -= 1;
  EXPECT_BUFFER_TOO_SMALL(
      plan, &args, CI "lse buffer too small (got 78 elements, expected at least 79)", 79, 78);

  /* A B, S, H, D layout passed as a strided view. */
  args = valid;
  set_strides(&args.q, kQueryLen * kHeads * kDk, kDk, kHeads * kDk, 1);
  set_strides(&args.y, kQueryLen * kHeads * kDv, kDv, kHeads * kDv, 1);
  set_strides(&args.k, kKeyLen * kHeadsK * kDk, kDk, kHeadsK * kDk, 1);
  set_strides(&args.v, kKeyLen * kHeadsK * kDv, kDv, kHeadsK * kDv, 1);
  EXPECT_ACCEPTED(plan, &args);

  /* A padded batch stride widens the span past the element count. */
  args = valid;
  args.q.strides[0] = 2 * kHeads * kQueryLen * kDk;
  EXPECT_BUFFER_TOO_SMALL(
      plan, &args, CI "q buffer too small (got 2560 elements, expected at least 3840)", 3840, 2560);
  args.q.buffer_elements = 3840;
  EXPECT_ACCEPTED(plan, &args);
}

static void test_args_data_and_buffers(baracuda_flash_sdpa_plan plan,
                                       const baracuda_flash_sdpa_descriptor* desc) {
  const baracuda_flash_sdpa_args valid = make_args(desc, kHeadsK);
  baracuda_flash_sdpa_args args;

  /* NULL data for a view with elements, and a buffer one element (LSE: every element) smaller
   * than the view, with the sizes of the refusal. */
  static const ArgsCase kCases[] = {
      {__LINE__, "q NULL", INVALID,
       CI "q data is NULL (got NULL, expected a device pointer to 2560 elements)",
       .edits = {NULL_DATA(kQ)}},
      {__LINE__, "k NULL", INVALID,
       CI "k data is NULL (got NULL, expected a device pointer to 1792 elements)",
       .edits = {NULL_DATA(kK)}},
      {__LINE__, "v NULL", INVALID,
       CI "v data is NULL (got NULL, expected a device pointer to 896 elements)",
       .edits = {NULL_DATA(kV)}},
      {__LINE__, "y NULL", INVALID,
       CI "y data is NULL (got NULL, expected a device pointer to 1280 elements)",
       .edits = {NULL_DATA(kY)}},
      {__LINE__, "lse NULL", INVALID,
       CI "lse data is NULL (got NULL, expected a device pointer to 40 elements)",
       .edits = {NULL_DATA(kLse)}},

      {__LINE__, "q buffer short", TOO_SMALL,
       CI "q buffer too small (got 2559 elements, expected at least 2560)",
       .edits = {ADD_BUFFER(kQ, -1)}, .needed = 2560, .got = 2559},
      {__LINE__, "k buffer short", TOO_SMALL,
       CI "k buffer too small (got 1791 elements, expected at least 1792)",
       .edits = {ADD_BUFFER(kK, -1)}, .needed = 1792, .got = 1791},
      {__LINE__, "v buffer short", TOO_SMALL,
       CI "v buffer too small (got 895 elements, expected at least 896)",
       .edits = {ADD_BUFFER(kV, -1)}, .needed = 896, .got = 895},
      {__LINE__, "y buffer short", TOO_SMALL,
       CI "y buffer too small (got 1279 elements, expected at least 1280)",
       .edits = {ADD_BUFFER(kY, -1)}, .needed = 1280, .got = 1279},
      {__LINE__, "lse buffer empty", TOO_SMALL,
       CI "lse buffer too small (got 0 elements, expected at least 40)",
       .edits = {SET_BUFFER(kLse, 0)}, .needed = 40, .got = 0},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);

  /* Sizes are cleared by the next failure of another kind, and by the next success. */
  args = valid;
  args.q.buffer_elements -= 1;
  CHECK_INT(ARGS_STATUS(plan, &args), BARACUDA_STATUS_BUFFER_TOO_SMALL);
  args = valid;
  args.q.rank = 3;
  CHECK_INT(ARGS_STATUS(plan, &args), BARACUDA_STATUS_INVALID_PROBLEM);
  expect_no_sizes_at(__FILE__, __LINE__);
  args = valid;
  args.q.buffer_elements -= 1;
  CHECK_INT(ARGS_STATUS(plan, &args), BARACUDA_STATUS_BUFFER_TOO_SMALL);
  CHECK_INT(ARGS_STATUS(plan, &valid), BARACUDA_STATUS_SUCCESS);
  CHECK_STR(baracuda_last_error_message(), "");
  expect_no_sizes_at(__FILE__, __LINE__);
  args = valid;
  args.q.buffer_elements -= 1;
  CHECK_INT(ARGS_STATUS(plan, &args), BARACUDA_STATUS_BUFFER_TOO_SMALL);
  CHECK_INT(baracuda_flash_sdpa_plan_select(NULL, NULL, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  expect_no_sizes_at(__FILE__, __LINE__);

  /* A span that does not fit in int64 is refused, not wrapped into a small one. */
  args = valid;
  args.q.strides[0] = INT64_MAX;
  poison_last_error();
  CHECK_INT(ARGS_STATUS(plan, &args), BARACUDA_STATUS_INVALID_PROBLEM);
  check_prefix_at(__FILE__, __LINE__, baracuda_last_error_message(),
                  "flash_sdpa_check_args: q view addresses more than 2^63 elements (got shape ",
                  "message for a q stride whose span overflows int64");
}

static void test_args_mask(baracuda_flash_sdpa_plan plan,
                           const baracuda_flash_sdpa_descriptor* desc) {
  const baracuda_flash_sdpa_args valid = make_args(desc, kHeadsK);
  baracuda_flash_sdpa_args args = valid;

  /* The full mask and every pattern of extent-1 (broadcast) axes. */
  const int64_t full[4] = {kBatch, kHeads, kQueryLen, kKeyLen};
  for (int pattern = 0; pattern < 16; ++pattern) {
    int64_t shape[4];
    for (int axis = 0; axis < 4; ++axis) shape[axis] = (pattern >> axis) & 1 ? 1 : full[axis];
    args = valid;
    args.mask = make_mask(shape[0], shape[1], shape[2], shape[3]);
    EXPECT_ACCEPTED(plan, &args);
  }

  /* Zero strides broadcast the full extents from a [Sq, Sk] buffer. */
  args = valid;
  args.mask = make_mask(kBatch, kHeads, kQueryLen, kKeyLen);
  set_strides(&args.mask, 0, 0, kKeyLen, 1);
  args.mask.buffer_elements = kQueryLen * kKeyLen;
  EXPECT_ACCEPTED(plan, &args);

  /* A transposed [Sk, Sq] buffer: the mask's last axis need not be contiguous. */
  args = valid;
  args.mask = make_mask(kBatch, kHeads, kQueryLen, kKeyLen);
  set_strides(&args.mask, kHeads * kQueryLen * kKeyLen, kQueryLen * kKeyLen, 1, kQueryLen);
  EXPECT_ACCEPTED(plan, &args);

  /* A mask of another shape than [B|1, H|1, Sq|1, Sk|1], and a full mask of another element
   * or rank, a negative stride, NULL data, or a buffer one element smaller than its view. */
  static const ArgsCase kCases[] = {
      {__LINE__, "mask keys Sk + 1", INVALID,
       CI "mask shape mismatch (got [2, 4, 5, 8], expected [2|1, 4|1, 5|1, 7|1])",
       .mask = {kBatch, kHeads, kQueryLen, kKeyLen + 1}},
      {__LINE__, "mask batch B + 1", INVALID,
       CI "mask shape mismatch (got [3, 4, 5, 7], expected [2|1, 4|1, 5|1, 7|1])",
       .mask = {kBatch + 1, kHeads, kQueryLen, kKeyLen}},
      {__LINE__, "mask heads Hk", INVALID,
       CI "mask shape mismatch (got [2, 2, 5, 7], expected [2|1, 4|1, 5|1, 7|1])",
       .mask = {kBatch, kHeadsK, kQueryLen, kKeyLen}},
      {__LINE__, "mask f16", INVALID, CI "mask element mismatch (got f16, expected f32)",
       .edits = {ELEMENT(kMask, BARACUDA_ELEMENT_F16)}, .mask = FULL_MASK},
      {__LINE__, "mask rank 3", INVALID, CI "mask rank mismatch (got 3, expected 4)",
       .edits = {RANK(kMask, 3)}, .mask = FULL_MASK},
      {__LINE__, "mask last stride -1", INVALID,
       CI "mask stride of axis 3 is negative (got -1, expected >= 0)",
       .edits = {STRIDE(kMask, 3, -1)}, .mask = FULL_MASK},
      {__LINE__, "mask NULL", INVALID,
       CI "mask data is NULL (got NULL, expected a device pointer to 280 elements)",
       .edits = {NULL_DATA(kMask)}, .mask = FULL_MASK},
      {__LINE__, "mask buffer short", TOO_SMALL,
       CI "mask buffer too small (got 279 elements, expected at least 280)",
       .edits = {ADD_BUFFER(kMask, -1)}, .mask = FULL_MASK, .needed = 280, .got = 279},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);
}

static void test_args_alibi(baracuda_flash_sdpa_plan plan,
                            const baracuda_flash_sdpa_descriptor* desc) {
  const baracuda_flash_sdpa_args valid = make_args(desc, kHeadsK);
  baracuda_flash_sdpa_args args;

  args = valid;
  args.alibi_slopes = make_slopes(1, kHeads);
  EXPECT_ACCEPTED(plan, &args);
  args = valid;
  args.alibi_slopes = make_slopes(kBatch, kHeads);
  EXPECT_ACCEPTED(plan, &args);
  args = valid;
  args.alibi_slopes = make_slopes(kBatch, kHeads);
  set_strides(&args.alibi_slopes, 0, 1, 0, 0);
  args.alibi_slopes.buffer_elements = kHeads;
  EXPECT_ACCEPTED(plan, &args);

  /* Slopes neither [1, H] nor [B, H], and slopes of another element or rank, NULL data, or a
   * buffer one element smaller than the view. */
  static const ArgsCase kCases[] = {
      {__LINE__, "slopes heads H + 1", INVALID,
       CI "alibi_slopes shape mismatch (got [2, 5], expected [1, 4] or [2, 4])",
       .slopes = {kBatch, kHeads + 1}},
      {__LINE__, "slopes [1, 1]", INVALID,
       CI "alibi_slopes shape mismatch (got [1, 1], expected [1, 4] or [2, 4])", .slopes = {1, 1}},
      {__LINE__, "slopes f16", INVALID, CI "alibi_slopes element mismatch (got f16, expected f32)",
       .edits = {ELEMENT(kSlopes, BARACUDA_ELEMENT_F16)}, .slopes = {kBatch, kHeads}},
      {__LINE__, "slopes rank 1", INVALID, CI "alibi_slopes rank mismatch (got 1, expected 2)",
       .edits = {RANK(kSlopes, 1), SHAPE(kSlopes, 0, kHeads)}, .slopes = {1, kHeads}},
      {__LINE__, "slopes NULL", INVALID,
       CI "alibi_slopes data is NULL (got NULL, expected a device pointer to 8 elements)",
       .edits = {NULL_DATA(kSlopes)}, .slopes = {kBatch, kHeads}},
      {__LINE__, "slopes buffer short", TOO_SMALL,
       CI "alibi_slopes buffer too small (got 7 elements, expected at least 8)",
       .edits = {ADD_BUFFER(kSlopes, -1)}, .slopes = {kBatch, kHeads}, .needed = 8, .got = 7},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);

  /* With three batches, [2, H] is neither [1, H] nor [B, H]. */
  baracuda_flash_sdpa_descriptor three = *desc;
  three.batch_size = 3;
  baracuda_flash_sdpa_plan plan3 = select_plan(&three);
  if (plan3 == NULL) return;
  const baracuda_flash_sdpa_args valid3 = make_args(&three, kHeadsK);
  args = valid3;
  args.alibi_slopes = make_slopes(3, kHeads);
  EXPECT_ACCEPTED(plan3, &args);
  args = valid3;
  args.alibi_slopes = make_slopes(1, kHeads);
  EXPECT_ACCEPTED(plan3, &args);
  static const ArgsCase kThreeBatchCases[] = {
      {__LINE__, "slopes batch 2 of 3", INVALID,
       CI "alibi_slopes shape mismatch (got [2, 4], expected [1, 4] or [3, 4])",
       .slopes = {2, kHeads}},
      {__LINE__, "slopes heads H + 1 of 3 batches", INVALID,
       CI "alibi_slopes shape mismatch (got [3, 5], expected [1, 4] or [3, 4])",
       .slopes = {3, kHeads + 1}},
  };
  EXPECT_ARGS_CASES(plan3, &valid3, kThreeBatchCases);
  release_plan(plan3);
}

/* LSE is f32 for f32, f16 and bf16, f64 for f64; mask and slopes are f32 for every element. */
static void test_args_per_element(void) {
  for (int e = 0; e < kElementCount; ++e) {
    const baracuda_element element = kElements[e];
    const baracuda_element lse = lse_element_of(element);
    const baracuda_flash_sdpa_descriptor desc = make_descriptor(element);
    baracuda_flash_sdpa_plan plan = select_plan(&desc);
    if (plan == NULL) continue;

    if (!is_stand_in(plan)) {
      baracuda_precision_guarantee guarantee;
      memset(&guarantee, 0, sizeof guarantee);
      CHECK_INT(baracuda_flash_sdpa_precision_guarantee(plan, &guarantee), BARACUDA_STATUS_SUCCESS);
      CHECK_INT(guarantee.math_precision, lse);
      CHECK_INT(guarantee.accumulator, lse);
      CHECK_INT(guarantee.deterministic, 1);
      CHECK_INT(guarantee.bit_stable_on_same_hardware, 1);
    }

    baracuda_flash_sdpa_args args = make_args(&desc, kHeadsK);
    args.mask = make_mask(kBatch, kHeads, kQueryLen, kKeyLen);
    args.alibi_slopes = make_slopes(kBatch, kHeads);
    EXPECT_ACCEPTED(plan, &args);

    char expected[kMessageCapacity];
    const baracuda_element wrong_lse =
        element == BARACUDA_ELEMENT_F64 ? BARACUDA_ELEMENT_F32 : BARACUDA_ELEMENT_F64;
    baracuda_flash_sdpa_args wrong = args;
    wrong.lse.element = wrong_lse;
    snprintf(expected, sizeof expected, CI "lse element mismatch (got %s, expected %s)",
             baracuda_element_string(wrong_lse), baracuda_element_string(lse));
    EXPECT_INVALID(plan, &wrong, expected);

    if (element != lse) {
      wrong = args;
      wrong.lse.element = element;
      snprintf(expected, sizeof expected, CI "lse element mismatch (got %s, expected f32)",
               baracuda_element_string(element));
      EXPECT_INVALID(plan, &wrong, expected);
    }
    if (element != BARACUDA_ELEMENT_F32) {
      wrong = args;
      wrong.mask.element = element;
      snprintf(expected, sizeof expected, CI "mask element mismatch (got %s, expected f32)",
               baracuda_element_string(element));
      EXPECT_INVALID(plan, &wrong, expected);
      wrong = args;
      wrong.alibi_slopes.element = element;
      snprintf(expected, sizeof expected, CI "alibi_slopes element mismatch (got %s, expected f32)",
               baracuda_element_string(element));
      EXPECT_INVALID(plan, &wrong, expected);
    }
    release_plan(plan);
  }
}

/* The memory rules: data aligned for its element, written views that do not fold onto
 * themselves, written bytes shared with no other argument, every range inside memory. */
static void test_args_memory(baracuda_flash_sdpa_plan plan,
                             const baracuda_flash_sdpa_descriptor* desc) {
  const baracuda_flash_sdpa_args valid = make_args(desc, kHeadsK);
  enum { kF16Bytes = 2, kF32Bytes = 4 };
  const int64_t q_bytes = valid.q.buffer_elements * kF16Bytes;
  const int64_t y_bytes = valid.y.buffer_elements * kF16Bytes;
  const int64_t lse_bytes = valid.lse.buffer_elements * kF32Bytes;
  char expected[kMessageCapacity];
  baracuda_flash_sdpa_args args = valid;

  /* Misaligned data, for the element of each tensor. */
  args.q.data = (char*)valid.q.data + 1;
  snprintf(expected, sizeof expected,
           CI "q data is misaligned for f16 (got %p, expected a multiple of 2 bytes)", args.q.data);
  EXPECT_INVALID(plan, &args, expected);
  args = valid;
  args.lse.data = (char*)valid.lse.data + 2;
  snprintf(expected, sizeof expected,
           CI "lse data is misaligned for f32 (got %p, expected a multiple of 4 bytes)",
           args.lse.data);
  EXPECT_INVALID(plan, &args, expected);
  args = valid;
  args.mask = make_mask(kBatch, kHeads, kQueryLen, kKeyLen);
  args.mask.data = (char*)args.mask.data + 2;
  snprintf(expected, sizeof expected,
           CI "mask data is misaligned for f32 (got %p, expected a multiple of 4 bytes)",
           args.mask.data);
  EXPECT_INVALID(plan, &args, expected);
  args = valid;
  args.alibi_slopes = make_slopes(1, kHeads);
  args.alibi_slopes.data = (char*)args.alibi_slopes.data + 1;
  snprintf(expected, sizeof expected,
           CI "alibi_slopes data is misaligned for f32 (got %p, expected a multiple of 4 bytes)",
           args.alibi_slopes.data);
  EXPECT_INVALID(plan, &args, expected);

  /* Written views whose elements share addresses. */
  args = valid;
  set_strides(&args.lse, 1, 1, 1, 0);
  EXPECT_INVALID(plan, &args,
                 CI
                 "lse is written, so no two of its elements may share memory (got shape "
                 "[2, 4, 5] with strides [1, 1, 1], expected strides under which every "
                 "element has its own address)");
  args = valid;
  set_strides(&args.y, kHeads * kQueryLen * kDv, kQueryLen * kDv, kDv / 2, 1);
  EXPECT_INVALID(plan, &args,
                 CI
                 "y is written, so no two of its elements may share memory (got shape "
                 "[2, 4, 5, 32] with strides [640, 160, 16, 1], expected strides under which "
                 "every element has its own address)");
  /* Read views may fold: a broadcast mask row read for every query. */
  args = valid;
  args.mask = make_mask(kBatch, kHeads, kQueryLen, kKeyLen);
  set_strides(&args.mask, kHeads * kQueryLen * kKeyLen, kQueryLen * kKeyLen, 1, 1);
  EXPECT_ACCEPTED(plan, &args);

  /* Outputs sharing bytes with an input or with each other. */
  args = valid;
  args.y.data = valid.q.data;
  snprintf(expected, sizeof expected,
           CI
           "y and q share memory (got y at %p for %lld bytes and q at %p for %lld bytes, "
           "expected y to share no byte with another argument)",
           valid.q.data, (long long)y_bytes, valid.q.data, (long long)q_bytes);
  EXPECT_INVALID(plan, &args, expected);
  args = valid;
  args.lse.data = (char*)valid.y.data + y_bytes - kF32Bytes;
  snprintf(expected, sizeof expected,
           CI
           "y and lse share memory (got y at %p for %lld bytes and lse at %p for %lld bytes, "
           "expected y to share no byte with another argument)",
           valid.y.data, (long long)y_bytes, args.lse.data, (long long)lse_bytes);
  EXPECT_INVALID(plan, &args, expected);
  args = valid;
  args.mask = make_mask(1, 1, kQueryLen, kKeyLen);
  args.mask.data = valid.lse.data;
  snprintf(expected, sizeof expected,
           CI
           "lse and mask share memory (got lse at %p for %lld bytes and mask at %p for %lld "
           "bytes, expected lse to share no byte with another argument)",
           valid.lse.data, (long long)lse_bytes, valid.lse.data,
           (long long)(kQueryLen * kKeyLen * kF32Bytes));
  EXPECT_INVALID(plan, &args, expected);
  /* An output that ends where the next begins shares nothing. */
  args = valid;
  args.lse.data = (char*)valid.y.data + y_bytes;
  EXPECT_ACCEPTED(plan, &args);
  /* Inputs may share bytes: q, k and v in one buffer. */
  args = valid;
  args.k.data = valid.q.data;
  args.v.data = valid.q.data;
  EXPECT_ACCEPTED(plan, &args);

  /* A range that runs past the end of the address space. */
  args = valid;
  const uintptr_t last_aligned = ~(uintptr_t)0 - 15;
  args.q.data = (void*)last_aligned;
  snprintf(expected, sizeof expected,
           CI
           "q runs past the end of the address space (got %lld bytes from %p, expected a "
           "range inside memory)",
           (long long)q_bytes, args.q.data);
  EXPECT_INVALID(plan, &args, expected);
}

/* check_args runs the descriptor checks of select first, under its own name, and needs no
 * plan. */
static void test_check_args_descriptor(void) {
  baracuda_flash_sdpa_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F16);
  const baracuda_flash_sdpa_args args = make_args(&desc, kHeadsK);
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_check_args(NULL, &args), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_check_args: desc is NULL (got NULL, expected a descriptor)");
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_check_args(&desc, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_check_args: args is NULL (got NULL, expected args)");
  desc.softcap = -1.0;
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_check_args(&desc, &args), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_check_args: softcap must be finite and non-negative (got -1, expected 0 "
            "to disable or a finite value > 0)");
  desc = make_descriptor(BARACUDA_ELEMENT_F16);
  desc.d_k = 12;
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_check_args(&desc, &args), BARACUDA_STATUS_UNSUPPORTED);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_check_args: d_k is not a supported head dim (got 12, expected a multiple "
            "of 8 in [8, 256])");
}

/* What a selected plan reports. */
static void test_plan_queries(baracuda_flash_sdpa_plan plan,
                              const baracuda_flash_sdpa_descriptor* desc) {
  baracuda_kernel_sku sku;
  memset(&sku, 0, sizeof sku);
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_sku(plan, &sku), BARACUDA_STATUS_SUCCESS);
  CHECK_STR(baracuda_last_error_message(), "");
  CHECK_INT(baracuda_flash_sdpa_backend(plan), expected_backend(desc->element, sku.arch, NULL));
  CHECK_INT(sku.backend, baracuda_flash_sdpa_backend(plan));
  CHECK_INT(sku.element, desc->element);
  CHECK(sku.head_dim_bucket >= kDk && sku.head_dim_bucket <= kMaxHeadDim,
        "sku bucket in [%d, %d] (got %d)", kDk, kMaxHeadDim, (int)sku.head_dim_bucket);
  CHECK(sku.arch >= 80, "sku arch is sm_80 or newer (got %d)", (int)sku.arch);
  char expected_name[kMessageCapacity];
  expected_sku_name(expected_name, sizeof expected_name, "flash_sdpa", &sku);
  check_str_at(__FILE__, __LINE__, sku.name, expected_name, "sku name");

  size_t bytes = 12345;
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_workspace_size(plan, &bytes), BARACUDA_STATUS_SUCCESS);
  CHECK_STR(baracuda_last_error_message(), "");
  CHECK_INT(bytes, 0);

  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_sku(plan, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_sku: plan and sku must not be NULL (got NULL, expected pointers)");
  CHECK_INT(baracuda_flash_sdpa_precision_guarantee(plan, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_precision_guarantee: plan and guarantee must not be NULL (got NULL, "
            "expected pointers)");
  CHECK_INT(baracuda_flash_sdpa_workspace_size(plan, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_workspace_size: plan and bytes must not be NULL (got NULL, expected "
            "pointers)");

  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_can_implement(plan, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_can_implement: args is NULL (got NULL, expected args)");
}

/* run checks the args as can_implement does, under its own name, before anything else. The
 * portable backend needs no workspace, so no workspace is too small for it. */
static void test_run_checks(baracuda_flash_sdpa_plan plan,
                            const baracuda_flash_sdpa_descriptor* desc) {
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_run(plan, NULL, NULL, 0, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_run: args is NULL (got NULL, expected args)");

  const baracuda_flash_sdpa_args valid = make_args(desc, kHeadsK);
  baracuda_flash_sdpa_args args = valid;
  args.q.rank = 3;
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_run(plan, &args, NULL, 0, NULL), BARACUDA_STATUS_INVALID_PROBLEM);
  CHECK_STR(baracuda_last_error_message(), "flash_sdpa_run: q rank mismatch (got 3, expected 4)");

  args = valid;
  args.y.buffer_elements -= 1;
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_run(plan, &args, NULL, 0, NULL), BARACUDA_STATUS_BUFFER_TOO_SMALL);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_run: y buffer too small (got 1279 elements, expected at least 1280)");
  expect_sizes_at(__FILE__, __LINE__, 1280, 1279);

  args = valid;
  args.k.strides[3] = 2;
  args.k.buffer_elements *= 2;
  poison_last_error();
  CHECK_INT(baracuda_flash_sdpa_run(plan, &args, fake_buffer(kBufferSlopes + 1), 4096, NULL),
            BARACUDA_STATUS_UNSUPPORTED);
  CHECK_STR(baracuda_last_error_message(),
            "flash_sdpa_run: k last-axis stride must be 1 (got 2, expected 1)");
}

/* Problems with no elements: every view is empty, so NULL data is fine, and run has nothing
 * to launch. An empty output writes nothing, so no stride of it can alias: zero strides, as
 * NumPy and CuPy give empty arrays and the seed entry points lay them out, are fine. */
static void test_empty_problems(void) {
  baracuda_flash_sdpa_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F16);
  desc.batch_size = 0;
  baracuda_flash_sdpa_plan plan = select_plan(&desc);
  if (plan != NULL) {
    const baracuda_flash_sdpa_args args = make_args(&desc, kHeadsK);
    CHECK(args.q.data == NULL && args.k.data == NULL && args.lse.data == NULL,
          "empty views have NULL data");
    EXPECT_ACCEPTED(plan, &args);
    if (!is_stand_in(plan)) {
      poison_last_error();
      CHECK_INT(baracuda_flash_sdpa_run(plan, &args, NULL, 0, NULL), BARACUDA_STATUS_SUCCESS);
      CHECK_STR(baracuda_last_error_message(), "");
    }
    release_plan(plan);
  }

  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.query_len = 0;
  plan = select_plan(&desc);
  if (plan != NULL) {
    baracuda_flash_sdpa_args args = make_args(&desc, kHeadsK);
    CHECK(args.y.data == NULL && args.lse.data == NULL, "empty outputs have NULL data");
    EXPECT_ACCEPTED(plan, &args);
    set_strides(&args.y, 0, 0, 0, 1);
    set_strides(&args.lse, 0, 0, 0, 0);
    EXPECT_ACCEPTED(plan, &args);
    release_plan(plan);
  }

  /* The seed entry points lay out contiguous views themselves. */
  if (g_device_present) {
    poison_last_error();
    CHECK_INT(baracuda_kernels_flash_sdpa_f32_run(kBatch, kHeads, 0, 0, kDk, kDv, 0.125f, 0, NULL,
                                                  NULL, NULL, NULL, NULL, NULL, 0, NULL),
              BARACUDA_STATUS_SUCCESS);
    CHECK_STR(baracuda_last_error_message(), "");
  }

  /* No query heads: K and V have none either. */
  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.num_heads = 0;
  plan = select_plan(&desc);
  if (plan != NULL) {
    baracuda_flash_sdpa_args args = make_args(&desc, 0);
    EXPECT_ACCEPTED(plan, &args);
    args = make_args(&desc, 1);
    EXPECT_INVALID(plan, &args,
                   CI "k shape[1] (num_heads_k) must be 0 when num_heads is 0 (got 1, expected 0)");
    release_plan(plan);
  }
}

/* The argument checks: through can_implement and check_args with a device, through check_args
 * alone without one; the plan's own queries and run only with a device. */
static void test_argument_checks(void) {
  const baracuda_flash_sdpa_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F16);
  baracuda_flash_sdpa_plan plan = select_plan(&desc);
  if (plan == NULL) return;
  if (!is_stand_in(plan)) test_plan_queries(plan, &desc);
  test_args_ranks_elements_shapes(plan, &desc);
  test_args_heads_k(plan, &desc);
  test_args_head_broadcast(plan, &desc);
  test_args_strides(plan, &desc);
  test_args_data_and_buffers(plan, &desc);
  test_args_mask(plan, &desc);
  test_args_alibi(plan, &desc);
  test_args_memory(plan, &desc);
  if (!is_stand_in(plan)) test_run_checks(plan, &desc);
  release_plan(plan);
  test_args_per_element();
  test_empty_problems();
  test_check_args_descriptor();
}

/* ------------------------------------------------------------------ main */

int main(void) {
  test_descriptor_init_defaults();

  detect_device();
  test_select_null_pointers();
  test_select_refuses_bad_descriptors();
  test_select_refuses_score_options_out_of_range();
  test_select_grid_limit();
  test_select_accepts_valid_descriptors();
  test_select_head_dim_buckets();
  test_null_plan_functions();

  test_argument_checks();
  if (!g_device_present) {
    printf(
        "skipped: can_implement, run and the plan queries (they need a plan, and a plan "
        "needs a CUDA device); their argument checks ran through check_args\n");
  }

  return test_summary();
}
