/*
 * Ring attention plan, C API, no CUDA header: descriptor defaults, layout and schedule names,
 * every descriptor check of baracuda_ring_attention_plan_select and the order they run in, the
 * head-dim buckets, and the NULL checks of the plan functions, each with its status and message.
 *
 * The argument checks of can_implement and run, the scratch sizes, the SKU and the precision
 * guarantee need a selected plan, hence a CUDA device. As in test_flash_sdpa.c, the status of a
 * valid select tells whether one is present; without one the test says what it skipped. The
 * pointers of those checks stand for device buffers and are never dereferenced: every run below is
 * refused before it launches, or has nothing to launch. The numerics are
 * test_ring_attention_gpu.c's.
 */
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

/* Query rows of one portable block: the step's grid is B x H x ceil(Sq / this). */
enum { kPortableBlockRows = 16 };
static const int64_t kMaxGridBlocks = INT_MAX;

/* The oldest architecture of the portable backend (compute capability x10). */
enum { kPortableMinArch = 80 };

/* The problem of the argument checks: B, H, Hk (GQA groups of two), Sq, Sk (both even, so that
 * zigzag accepts them), D. */
enum { kBatch = 2, kHeads = 4, kHeadsK = 2, kQueryLen = 6, kKeyLen = 10, kHeadDim = 32 };

/* A K/V scratch buffer holds K then V; the accumulators hold o (D per row), then m and l. */
enum { kKvTensors = 2, kAccumulatorRowExtras = 2 };

/* The accumulator scratch's alignment in bytes, and a misaligned offset from an aligned start. */
enum { kAccumulatorAlignment = 16, kMisalignment = 8 };

enum { kMessageCapacity = 1024 };

#define SELECT "ring_attention_plan_select: "
#define CI "ring_attention_can_implement: "
#define RUN "ring_attention_run: "

static const char kNoDeviceMessagePrefix[] =
    SELECT "cudaGetDevice (is a CUDA device present?) failed (got ";
static const char kCudaErrorMessageSuffix[] = ", expected cudaSuccess)";

/* Whether a CUDA device is present, as select reports it. */
static int g_device_present = 0;

/* A non-NULL plan handle that select must overwrite; never dereferenced. */
static max_align_t g_not_a_plan;
#define NOT_A_PLAN ((baracuda_ring_attention_plan)(void*)&g_not_a_plan)

/* A non-NULL communicator handle; passed only where run stops before NCCL would use it. */
static max_align_t g_not_a_comm;
#define NOT_A_COMM ((baracuda_nccl_comm)(void*)&g_not_a_comm)

static baracuda_element compute_element_of(baracuda_element element) {
  return element == BARACUDA_ELEMENT_F64 ? BARACUDA_ELEMENT_F64 : BARACUDA_ELEMENT_F32;
}

static baracuda_ring_attention_descriptor make_descriptor(baracuda_element element) {
  baracuda_ring_attention_descriptor desc;
  baracuda_ring_attention_descriptor_init(&desc, kBatch, kHeads, kQueryLen, kKeyLen, kHeadDim,
                                          element);
  desc.num_heads_k = kHeadsK;
  return desc;
}

/* kv_scratch_elements as the header defines it: K then V, [B, Hk, Sk, D] each. */
static int64_t expected_kv_scratch_elements(const baracuda_ring_attention_descriptor* d) {
  return (int64_t)kKvTensors * d->batch_size * d->num_heads_k * d->key_len * d->head_dim;
}

/* accumulator_scratch_bytes as the header defines it: o, m, l in the compute element. */
static int64_t expected_accumulator_bytes(const baracuda_ring_attention_descriptor* d) {
  return (int64_t)d->batch_size * d->num_heads * d->query_len *
         (d->head_dim + kAccumulatorRowExtras) *
         (int64_t)baracuda_element_size(compute_element_of(d->element));
}

/* Leaves a known, non-empty message and zero sizes, so that each check below sees what the call
 * under test wrote. */
static void poison_last_error(void) {
  baracuda_ring_attention_plan_select(NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ expectations */

static void expect_sizes(int line, int64_t expected_needed, int64_t expected_got) {
  int64_t needed = -1;
  int64_t got = -1;
  baracuda_last_error_sizes(&needed, &got);
  CHECK(needed == expected_needed, "line %d: baracuda_last_error_sizes needed %lld, expected %lld",
        line, (long long)needed, (long long)expected_needed);
  CHECK(got == expected_got, "line %d: baracuda_last_error_sizes got %lld, expected %lld", line,
        (long long)got, (long long)expected_got);
}

static void expect_message(int line, const char* expected) {
  const char* message = baracuda_last_error_message();
  CHECK(strcmp(message, expected) == 0,
        "line %d: message\n    got      \"%s\"\n    expected \"%s\"", line, message, expected);
}

/* The message starts with prefix and ends with suffix (either may be ""): for messages that hold
 * a pointer, whose text is the platform's. */
static void expect_message_parts(int line, const char* prefix, const char* suffix) {
  const char* message = baracuda_last_error_message();
  CHECK(starts_with(message, prefix) && ends_with(message, suffix),
        "line %d: message\n    got             \"%s\"\n    expected prefix \"%s\"\n"
        "    expected suffix \"%s\"",
        line, message, prefix, suffix);
}

static void expect_status(int line, baracuda_status status, baracuda_status expected,
                          const char* call) {
  CHECK(status == expected, "line %d: %s status %d (%s), expected %d (%s); message: %s", line, call,
        (int)status, baracuda_status_string(status), (int)expected,
        baracuda_status_string(expected), baracuda_last_error_message());
}

static void expect_no_device_message(int line) {
  expect_message_parts(line, kNoDeviceMessagePrefix, kCudaErrorMessageSuffix);
}

/* Select refuses desc with status; the message is exactly `message`, or, when `exact` is 0,
 * starts with it. *plan is set to NULL and no sizes are left. */
static void select_refuses(int line, const baracuda_ring_attention_descriptor* desc,
                           const baracuda_plan_preference* preference, baracuda_status expected,
                           const char* message, int exact) {
  poison_last_error();
  baracuda_ring_attention_plan plan = NOT_A_PLAN;
  const baracuda_status status = baracuda_ring_attention_plan_select(desc, preference, &plan);
  expect_status(line, status, expected, "plan_select");
  if (exact)
    expect_message(line, message);
  else
    expect_message_parts(line, message, "");
  CHECK(plan == NULL, "line %d: plan_select sets *plan to NULL when it refuses", line);
  expect_sizes(line, 0, 0);
  if (plan != NULL && plan != NOT_A_PLAN) baracuda_ring_attention_plan_destroy(plan);
}

#define EXPECT_SELECT_REFUSES(desc, preference, status, message) \
  select_refuses(__LINE__, (desc), (preference), (status), (message), 1)
#define EXPECT_SELECT_REFUSES_PREFIX(desc, preference, status, prefix) \
  select_refuses(__LINE__, (desc), (preference), (status), (prefix), 0)

/* Select accepts desc: a portable plan on a device; without one, the CUDA error of
 * cudaGetDevice, which select reaches only after every descriptor check has passed. */
static void select_accepts(int line, const baracuda_ring_attention_descriptor* desc,
                           const baracuda_plan_preference* preference) {
  poison_last_error();
  baracuda_ring_attention_plan plan = NOT_A_PLAN;
  const baracuda_status status = baracuda_ring_attention_plan_select(desc, preference, &plan);
  if (g_device_present) {
    expect_status(line, status, BARACUDA_STATUS_SUCCESS, "plan_select");
    if (status == BARACUDA_STATUS_SUCCESS) {
      expect_message(line, "");
      CHECK(plan != NULL && plan != NOT_A_PLAN, "line %d: plan_select stores a plan", line);
      baracuda_kernel_sku sku;
      baracuda_ring_attention_sku(plan, &sku);
      CHECK(baracuda_ring_attention_backend(plan) ==
                expected_backend(desc->element, sku.arch, preference),
            "line %d: the plan's backend follows the rule (got %s)", line,
            baracuda_backend_string(baracuda_ring_attention_backend(plan)));
    }
    if (plan != NULL && plan != NOT_A_PLAN) baracuda_ring_attention_plan_destroy(plan);
  } else {
    expect_status(line, status, BARACUDA_STATUS_CUDA_ERROR, "plan_select without a device");
    expect_no_device_message(line);
    CHECK(plan == NULL, "line %d: plan_select sets *plan to NULL when it fails", line);
    expect_sizes(line, 0, 0);
  }
}

#define EXPECT_SELECT_ACCEPTS(desc, preference) select_accepts(__LINE__, (desc), (preference))

/* ------------------------------------------------------------------ strings and defaults */

static void test_layout_and_schedule_strings(void) {
  const struct {
    const char* got;
    const char* expected;
  } cases[] = {
      {baracuda_ring_layout_string(BARACUDA_RING_LAYOUT_CONTIGUOUS), "contiguous"},
      {baracuda_ring_layout_string(BARACUDA_RING_LAYOUT_ZIGZAG), "zigzag"},
      {baracuda_ring_layout_string((baracuda_ring_layout)2), "invalid"},
      {baracuda_ring_layout_string((baracuda_ring_layout)-1), "invalid"},
      {baracuda_ring_schedule_string(BARACUDA_RING_SCHEDULE_OVERLAPPED), "overlapped"},
      {baracuda_ring_schedule_string(BARACUDA_RING_SCHEDULE_SERIAL), "serial"},
      {baracuda_ring_schedule_string((baracuda_ring_schedule)2), "invalid"},
      {baracuda_ring_schedule_string((baracuda_ring_schedule)-1), "invalid"},
  };
  for (size_t n = 0; n < sizeof cases / sizeof cases[0]; ++n) {
    CHECK(cases[n].got != NULL && strcmp(cases[n].got, cases[n].expected) == 0,
          "layout / schedule name %zu: got \"%s\", expected \"%s\"", n,
          cases[n].got != NULL ? cases[n].got : "(NULL)", cases[n].expected);
  }
}

static void test_descriptor_init_defaults(void) {
  enum { kB = 3, kH = 8, kSq = 17, kSk = 19, kD = 64 };
  const double kScaleOfD64 = 0.125; /* 1 / sqrt(64) */
  const double kScaleOfD16 = 0.25;  /* 1 / sqrt(16) */
  const double kScaleTolerance = 1e-15;
  enum { kFillByte = 0xA5, kD16 = 16, kD128 = 128 };

  baracuda_ring_attention_descriptor desc;
  memset(&desc, kFillByte, sizeof desc);
  baracuda_ring_attention_descriptor_init(&desc, kB, kH, kSq, kSk, kD, BARACUDA_ELEMENT_BF16);
  CHECK(desc.batch_size == kB, "init batch_size %d", desc.batch_size);
  CHECK(desc.num_heads == kH, "init num_heads %d", desc.num_heads);
  CHECK(desc.num_heads_k == kH, "init num_heads_k %d, expected num_heads %d", desc.num_heads_k, kH);
  CHECK(desc.query_len == kSq, "init query_len %d", desc.query_len);
  CHECK(desc.key_len == kSk, "init key_len %d", desc.key_len);
  CHECK(desc.head_dim == kD, "init head_dim %d", desc.head_dim);
  CHECK(desc.scale == kScaleOfD64, "init scale %.17g, expected 1 / sqrt(64)", desc.scale);
  CHECK(desc.is_causal == 0, "init is_causal %d", desc.is_causal);
  CHECK(desc.element == BARACUDA_ELEMENT_BF16, "init element %d", (int)desc.element);
  CHECK(desc.window_size_left == BARACUDA_WINDOW_UNBOUNDED, "init window_size_left %d",
        desc.window_size_left);
  CHECK(desc.window_size_right == BARACUDA_WINDOW_UNBOUNDED, "init window_size_right %d",
        desc.window_size_right);
  CHECK(desc.softcap == 0.0, "init softcap %g", desc.softcap);
  CHECK(desc.layout == BARACUDA_RING_LAYOUT_CONTIGUOUS, "init layout %d", (int)desc.layout);
  CHECK(desc.schedule == BARACUDA_RING_SCHEDULE_OVERLAPPED, "init schedule %d", (int)desc.schedule);

  baracuda_ring_attention_descriptor_init(&desc, 1, 1, 1, 1, kD16, BARACUDA_ELEMENT_F32);
  CHECK(desc.scale == kScaleOfD16, "init scale of head_dim 16: %.17g", desc.scale);
  baracuda_ring_attention_descriptor_init(&desc, 1, 1, 1, 1, kD128, BARACUDA_ELEMENT_F32);
  const double squared_error = desc.scale * desc.scale * kD128 - 1.0;
  CHECK(fabs(squared_error) < kScaleTolerance, "init scale of head_dim 128: %.17g", desc.scale);
  baracuda_ring_attention_descriptor_init(&desc, 1, 1, 1, 1, 0, BARACUDA_ELEMENT_F32);
  CHECK(desc.scale == 1.0, "init scale of head_dim 0: %.17g, expected 1", desc.scale);
}

/* ------------------------------------------------------------------ select */

/* Decides whether a device is present from a valid select, and checks what select says. */
static void detect_device(void) {
  const baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F16);
  poison_last_error();
  baracuda_ring_attention_plan plan = NOT_A_PLAN;
  const baracuda_status status = baracuda_ring_attention_plan_select(&desc, NULL, &plan);
  if (status == BARACUDA_STATUS_SUCCESS) {
    g_device_present = 1;
    CHECK(plan != NULL && plan != NOT_A_PLAN, "a valid select stores a plan");
    expect_message(__LINE__, "");
    baracuda_ring_attention_plan_destroy(plan);
    printf("a CUDA device is present: running the argument checks\n");
    return;
  }
  g_device_present = 0;
  expect_status(__LINE__, status, BARACUDA_STATUS_CUDA_ERROR, "valid select without a device");
  expect_no_device_message(__LINE__);
  CHECK(plan == NULL, "select without a device sets *plan to NULL");
  expect_sizes(__LINE__, 0, 0);
  printf("no CUDA device (%s): select stops at cudaGetDevice\n", baracuda_last_error_message());
}

static void test_select_null_pointers(void) {
  const baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
  EXPECT_SELECT_REFUSES(NULL, NULL, BARACUDA_STATUS_INVALID_PROBLEM,
                        SELECT "desc is NULL (got NULL, expected a descriptor)");

  /* No place to store the plan: refused before the descriptor is read. */
  const char* expected = SELECT "plan is NULL (got NULL, expected a place to store the plan)";
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_plan_select(&desc, NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "plan_select with plan NULL");
  expect_message(__LINE__, expected);
  expect_sizes(__LINE__, 0, 0);
  expect_status(__LINE__, baracuda_ring_attention_plan_select(NULL, NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "plan_select with desc and plan NULL");
  expect_message(__LINE__, expected);
}

/* The statuses of the tables below. */
#define INVALID BARACUDA_STATUS_INVALID_PROBLEM
#define UNSUPPORTED BARACUDA_STATUS_UNSUPPORTED
#define TOO_SMALL BARACUDA_STATUS_BUFFER_TOO_SMALL
#define WORKSPACE_TOO_SMALL BARACUDA_STATUS_WORKSPACE_TOO_SMALL

/* The descriptor fields a select case sets, and the preference's backend. */
typedef enum DescriptorField {
  kFieldNone, /* the end of a case's edits */
  kFieldElement,
  kFieldBatchSize,
  kFieldNumHeads,
  kFieldNumHeadsK,
  kFieldQueryLen,
  kFieldKeyLen,
  kFieldHeadDim,
  kFieldScale,
  kFieldSoftcap,
  kFieldIsCausal,
  kFieldWindowLeft,
  kFieldWindowRight,
  kFieldLayout,
  kFieldSchedule,
  kFieldPreferenceBackend
} DescriptorField;

/* One field set to one value; integer fields take it converted, and every value here is exact
 * in double. */
typedef struct DescriptorEdit {
  DescriptorField field;
  double value;
} DescriptorEdit;

enum { kMaxDescriptorEdits = 2 };

/* A valid descriptor spoilt by its edits, applied in order, and select's refusal of it: the
 * status and the exact message. */
typedef struct SelectCase {
  int line; /* of the case in its table, where a failing check is reported */
  const char* name;
  baracuda_status status;
  const char* message;
  DescriptorEdit edits[kMaxDescriptorEdits];
} SelectCase;

static void set_descriptor_field(baracuda_ring_attention_descriptor* desc,
                                 baracuda_plan_preference* preference, DescriptorField field,
                                 double value) {
  switch (field) {
    case kFieldNone: break;
    case kFieldElement: desc->element = (baracuda_element)(int)value; break;
    case kFieldBatchSize: desc->batch_size = (int32_t)value; break;
    case kFieldNumHeads: desc->num_heads = (int32_t)value; break;
    case kFieldNumHeadsK: desc->num_heads_k = (int32_t)value; break;
    case kFieldQueryLen: desc->query_len = (int32_t)value; break;
    case kFieldKeyLen: desc->key_len = (int32_t)value; break;
    case kFieldHeadDim: desc->head_dim = (int32_t)value; break;
    case kFieldScale: desc->scale = value; break;
    case kFieldSoftcap: desc->softcap = value; break;
    case kFieldIsCausal: desc->is_causal = (int32_t)value; break;
    case kFieldWindowLeft: desc->window_size_left = (int32_t)value; break;
    case kFieldWindowRight: desc->window_size_right = (int32_t)value; break;
    case kFieldLayout: desc->layout = (baracuda_ring_layout)(int)value; break;
    case kFieldSchedule: desc->schedule = (baracuda_ring_schedule)(int)value; break;
    case kFieldPreferenceBackend: preference->backend = (baracuda_backend)(int)value; break;
  }
}

/* Each case on an f32 descriptor, with no preference unless the case sets one; a failing case's
 * name follows the messages of its failed checks. */
static void expect_select_cases(const SelectCase* cases, size_t count) {
  for (size_t n = 0; n < count; ++n) {
    const SelectCase* c = &cases[n];
    baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
    baracuda_plan_preference preference = {BARACUDA_BACKEND_AUTO};
    int has_preference = 0;
    for (int e = 0; e < kMaxDescriptorEdits; ++e) {
      set_descriptor_field(&desc, &preference, c->edits[e].field, c->edits[e].value);
      if (c->edits[e].field == kFieldPreferenceBackend) has_preference = 1;
    }
    const int failures = g_failures;
    select_refuses(c->line, &desc, has_preference ? &preference : NULL, c->status, c->message, 1);
    if (g_failures != failures) fprintf(stderr, "    in select case \"%s\"\n", c->name);
  }
}

#define EXPECT_SELECT_CASES(cases) expect_select_cases((cases), sizeof(cases) / sizeof((cases)[0]))

/* Every descriptor field outside what select accepts, one at a time: the element, negative
 * extents, a non-finite scale, a negative or non-finite softcap, is_causal, the window bounds,
 * the layout, the schedule and the preference's backend outside their enums (all
 * INVALID_PROBLEM), and head dims that no backend supports (UNSUPPORTED). */
static void test_select_refuses_bad_descriptors(void) {
  static const SelectCase kCases[] = {
      {__LINE__, "element 0", INVALID,
       SELECT "element is not an element type (got 0, expected f32, f16, bf16 or f64)",
       .edits = {{kFieldElement, 0}}},
      {__LINE__, "element 5", INVALID,
       SELECT "element is not an element type (got 5, expected f32, f16, bf16 or f64)",
       .edits = {{kFieldElement, 5}}},
      {__LINE__, "element -1", INVALID,
       SELECT "element is not an element type (got -1, expected f32, f16, bf16 or f64)",
       .edits = {{kFieldElement, -1}}},

      {__LINE__, "batch_size -1", INVALID,
       SELECT "batch_size must be non-negative (got -1, expected >= 0)",
       .edits = {{kFieldBatchSize, -1}}},
      {__LINE__, "batch_size INT32_MIN", INVALID,
       SELECT "batch_size must be non-negative (got -2147483648, expected >= 0)",
       .edits = {{kFieldBatchSize, INT32_MIN}}},
      {__LINE__, "num_heads -1", INVALID,
       SELECT "num_heads must be non-negative (got -1, expected >= 0)",
       .edits = {{kFieldNumHeads, -1}}},
      {__LINE__, "num_heads INT32_MIN", INVALID,
       SELECT "num_heads must be non-negative (got -2147483648, expected >= 0)",
       .edits = {{kFieldNumHeads, INT32_MIN}}},
      {__LINE__, "num_heads_k -1", INVALID,
       SELECT "num_heads_k must be non-negative (got -1, expected >= 0)",
       .edits = {{kFieldNumHeadsK, -1}}},
      {__LINE__, "num_heads_k INT32_MIN", INVALID,
       SELECT "num_heads_k must be non-negative (got -2147483648, expected >= 0)",
       .edits = {{kFieldNumHeadsK, INT32_MIN}}},
      {__LINE__, "query_len -1", INVALID,
       SELECT "query_len must be non-negative (got -1, expected >= 0)",
       .edits = {{kFieldQueryLen, -1}}},
      {__LINE__, "query_len INT32_MIN", INVALID,
       SELECT "query_len must be non-negative (got -2147483648, expected >= 0)",
       .edits = {{kFieldQueryLen, INT32_MIN}}},
      {__LINE__, "key_len -1", INVALID,
       SELECT "key_len must be non-negative (got -1, expected >= 0)",
       .edits = {{kFieldKeyLen, -1}}},
      {__LINE__, "key_len INT32_MIN", INVALID,
       SELECT "key_len must be non-negative (got -2147483648, expected >= 0)",
       .edits = {{kFieldKeyLen, INT32_MIN}}},
      {__LINE__, "head_dim -1", INVALID,
       SELECT "head_dim must be non-negative (got -1, expected >= 0)",
       .edits = {{kFieldHeadDim, -1}}},
      {__LINE__, "head_dim INT32_MIN", INVALID,
       SELECT "head_dim must be non-negative (got -2147483648, expected >= 0)",
       .edits = {{kFieldHeadDim, INT32_MIN}}},

      {__LINE__, "scale nan", INVALID,
       SELECT "scale must be finite (got nan, expected a finite number)",
       .edits = {{kFieldScale, NAN}}},
      {__LINE__, "scale inf", INVALID,
       SELECT "scale must be finite (got inf, expected a finite number)",
       .edits = {{kFieldScale, INFINITY}}},
      {__LINE__, "scale -inf", INVALID,
       SELECT "scale must be finite (got -inf, expected a finite number)",
       .edits = {{kFieldScale, -INFINITY}}},

      {__LINE__, "softcap -1", INVALID,
       SELECT "softcap must be finite and non-negative (got -1, expected 0 to disable or a "
              "finite value > 0)",
       .edits = {{kFieldSoftcap, -1.0}}},
      {__LINE__, "softcap -0.5", INVALID,
       SELECT "softcap must be finite and non-negative (got -0.5, expected 0 to disable or a "
              "finite value > 0)",
       .edits = {{kFieldSoftcap, -0.5}}},
      {__LINE__, "softcap nan", INVALID,
       SELECT "softcap must be finite and non-negative (got nan, expected 0 to disable or a "
              "finite value > 0)",
       .edits = {{kFieldSoftcap, NAN}}},
      {__LINE__, "softcap inf", INVALID,
       SELECT "softcap must be finite and non-negative (got inf, expected 0 to disable or a "
              "finite value > 0)",
       .edits = {{kFieldSoftcap, INFINITY}}},
      {__LINE__, "softcap -inf", INVALID,
       SELECT "softcap must be finite and non-negative (got -inf, expected 0 to disable or a "
              "finite value > 0)",
       .edits = {{kFieldSoftcap, -INFINITY}}},

      {__LINE__, "is_causal 2", INVALID, SELECT "is_causal must be 0 or 1 (got 2, expected 0 or 1)",
       .edits = {{kFieldIsCausal, 2}}},
      {__LINE__, "is_causal -1", INVALID,
       SELECT "is_causal must be 0 or 1 (got -1, expected 0 or 1)",
       .edits = {{kFieldIsCausal, -1}}},

      {__LINE__, "window_size_left -2", INVALID,
       SELECT "window_size_left must be a bound >= 0 or unbounded (got -2, expected >= 0 or "
              "BARACUDA_WINDOW_UNBOUNDED = -1)",
       .edits = {{kFieldWindowLeft, -2}}},
      {__LINE__, "window_size_right -2", INVALID,
       SELECT "window_size_right must be a bound >= 0 or unbounded (got -2, expected >= 0 or "
              "BARACUDA_WINDOW_UNBOUNDED = -1)",
       .edits = {{kFieldWindowRight, -2}}},
      {__LINE__, "window_size_left INT32_MIN", INVALID,
       SELECT "window_size_left must be a bound >= 0 or unbounded (got -2147483648, expected "
              ">= 0 or BARACUDA_WINDOW_UNBOUNDED = -1)",
       .edits = {{kFieldWindowLeft, INT32_MIN}}},
      {__LINE__, "window_size_right INT32_MIN", INVALID,
       SELECT "window_size_right must be a bound >= 0 or unbounded (got -2147483648, expected "
              ">= 0 or BARACUDA_WINDOW_UNBOUNDED = -1)",
       .edits = {{kFieldWindowRight, INT32_MIN}}},

      {__LINE__, "layout 2", INVALID,
       SELECT "layout is not a ring layout (got 2, expected BARACUDA_RING_LAYOUT_CONTIGUOUS or "
              "BARACUDA_RING_LAYOUT_ZIGZAG)",
       .edits = {{kFieldLayout, 2}}},
      {__LINE__, "schedule 2", INVALID,
       SELECT "schedule is not a ring schedule (got 2, expected BARACUDA_RING_SCHEDULE_OVERLAPPED "
              "or BARACUDA_RING_SCHEDULE_SERIAL)",
       .edits = {{kFieldSchedule, 2}}},
      {__LINE__, "layout -1", INVALID,
       SELECT "layout is not a ring layout (got -1, expected BARACUDA_RING_LAYOUT_CONTIGUOUS or "
              "BARACUDA_RING_LAYOUT_ZIGZAG)",
       .edits = {{kFieldLayout, -1}}},
      {__LINE__, "schedule -1", INVALID,
       SELECT "schedule is not a ring schedule (got -1, expected "
              "BARACUDA_RING_SCHEDULE_OVERLAPPED or BARACUDA_RING_SCHEDULE_SERIAL)",
       .edits = {{kFieldSchedule, -1}}},

      {__LINE__, "preference backend 3", INVALID,
       SELECT "preference backend is not a backend (got 3, expected BARACUDA_BACKEND_AUTO, "
              "BARACUDA_BACKEND_PORTABLE or BARACUDA_BACKEND_HOPPER)",
       .edits = {{kFieldPreferenceBackend, 3}}},
      {__LINE__, "preference backend -1", INVALID,
       SELECT "preference backend is not a backend (got -1, expected BARACUDA_BACKEND_AUTO, "
              "BARACUDA_BACKEND_PORTABLE or BARACUDA_BACKEND_HOPPER)",
       .edits = {{kFieldPreferenceBackend, -1}}},

      /* Below the smallest, off the step of 8, above the largest. */
      {__LINE__, "head_dim 0", UNSUPPORTED,
       SELECT "head_dim is not a supported head dim (got 0, expected a multiple of 8 in [8, 256])",
       .edits = {{kFieldHeadDim, 0}}},
      {__LINE__, "head_dim 4", UNSUPPORTED,
       SELECT "head_dim is not a supported head dim (got 4, expected a multiple of 8 in [8, 256])",
       .edits = {{kFieldHeadDim, 4}}},
      {__LINE__, "head_dim 7", UNSUPPORTED,
       SELECT "head_dim is not a supported head dim (got 7, expected a multiple of 8 in [8, 256])",
       .edits = {{kFieldHeadDim, 7}}},
      {__LINE__, "head_dim 12", UNSUPPORTED,
       SELECT "head_dim is not a supported head dim (got 12, expected a multiple of 8 in [8, 256])",
       .edits = {{kFieldHeadDim, 12}}},
      {__LINE__, "head_dim 260", UNSUPPORTED,
       SELECT "head_dim is not a supported head dim (got 260, expected a multiple of 8 in "
              "[8, 256])",
       .edits = {{kFieldHeadDim, 260}}},
      {__LINE__, "head_dim 264", UNSUPPORTED,
       SELECT "head_dim is not a supported head dim (got 264, expected a multiple of 8 in "
              "[8, 256])",
       .edits = {{kFieldHeadDim, 264}}},
  };
  EXPECT_SELECT_CASES(kCases);
}

static void test_select_num_heads_k(void) {
  /* MHA, GQA, MQA. */
  const int32_t divisors[] = {kHeads, kHeadsK, 1};
  for (size_t n = 0; n < sizeof divisors / sizeof divisors[0]; ++n) {
    baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
    desc.num_heads_k = divisors[n];
    EXPECT_SELECT_ACCEPTS(&desc, NULL);
  }
  /* K/V heads that do not divide the 4 query heads: not a divisor, more than H, none. */
  static const SelectCase kRefused[] = {
      {__LINE__, "num_heads_k 3", INVALID,
       SELECT "num_heads_k must divide num_heads (got 3, expected a divisor of 4)",
       .edits = {{kFieldNumHeadsK, 3}}},
      {__LINE__, "num_heads_k 2 x num_heads", INVALID,
       SELECT "num_heads_k must divide num_heads (got 8, expected a divisor of 4)",
       .edits = {{kFieldNumHeadsK, 2 * kHeads}}},
      {__LINE__, "num_heads_k 0", INVALID,
       SELECT "num_heads_k must divide num_heads (got 0, expected a divisor of 4)",
       .edits = {{kFieldNumHeadsK, 0}}},
  };
  EXPECT_SELECT_CASES(kRefused);

  /* No query heads: no K/V heads either. */
  baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.num_heads = 0;
  desc.num_heads_k = 0;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);
  desc.num_heads_k = kHeadsK;
  char expected[kMessageCapacity];
  snprintf(expected, sizeof expected, SELECT "num_heads_k must ");
  EXPECT_SELECT_REFUSES_PREFIX(&desc, NULL, BARACUDA_STATUS_INVALID_PROBLEM, expected);
  snprintf(expected, sizeof expected, "(got %d, expected ", kHeadsK);
  CHECK(strstr(baracuda_last_error_message(), expected) != NULL,
        "num_heads_k %d with num_heads 0: message names the value: %s", kHeadsK,
        baracuda_last_error_message());
}

static void test_select_zigzag_lengths(void) {
  enum { kOdd = 7 };
  baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.layout = BARACUDA_RING_LAYOUT_ZIGZAG;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  /* The zigzag layout with an odd query or key length. */
  static const SelectCase kRefused[] = {
      {__LINE__, "zigzag query_len 7", INVALID,
       SELECT "query_len must be even for the zigzag layout, which holds two chunks of "
              "query_len / 2 per rank (got 7, expected an even number)",
       .edits = {{kFieldLayout, BARACUDA_RING_LAYOUT_ZIGZAG}, {kFieldQueryLen, kOdd}}},
      {__LINE__, "zigzag key_len 7", INVALID,
       SELECT "key_len must be even for the zigzag layout, which holds two chunks of "
              "key_len / 2 per rank (got 7, expected an even number)",
       .edits = {{kFieldLayout, BARACUDA_RING_LAYOUT_ZIGZAG}, {kFieldKeyLen, kOdd}}},
  };
  EXPECT_SELECT_CASES(kRefused);

  /* Odd lengths are fine for the contiguous layout; empty ones for zigzag. */
  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.query_len = kOdd;
  desc.key_len = kOdd;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);
  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.layout = BARACUDA_RING_LAYOUT_ZIGZAG;
  desc.query_len = 0;
  desc.key_len = 0;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);
}

static void test_select_grid_limit(void) {
  enum { kOverTile = kPortableBlockRows + 1 };
  char expected[kMessageCapacity];
  /* One block over the limit: INT32_MAX batches of two query tiles. */
  baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.batch_size = INT32_MAX;
  desc.num_heads = 1;
  desc.num_heads_k = 1;
  desc.query_len = kOverTile;
  snprintf(expected, sizeof expected,
           SELECT
           "batch_size x num_heads x query tiles of %d rows exceeds one launch (got %d x 1 "
           "x %d rows, expected <= %lld blocks)",
           kPortableBlockRows, INT32_MAX, kOverTile, (long long)kMaxGridBlocks);
  EXPECT_SELECT_REFUSES(&desc, NULL, BARACUDA_STATUS_UNSUPPORTED, expected);

  /* The largest grid: exactly the limit. */
  desc.query_len = kPortableBlockRows;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  /* Every extent at its largest: a block count beyond int64 is still refused. */
  desc.num_heads = INT32_MAX;
  desc.num_heads_k = 1;
  desc.query_len = INT32_MAX;
  snprintf(expected, sizeof expected,
           SELECT
           "batch_size x num_heads x query tiles of %d rows exceeds one launch (got %d x "
           "%d x %d rows",
           kPortableBlockRows, INT32_MAX, INT32_MAX, INT32_MAX);
  EXPECT_SELECT_REFUSES_PREFIX(&desc, NULL, BARACUDA_STATUS_UNSUPPORTED, expected);
}

/* The K/V scratch bytes (2 x B x Hk x Sk x D x element size) must fit in int64: a K/V chunk
 * beyond it is refused at select, so that can_implement never compares with a wrapped size. */
static void test_select_scratch_size_limit(void) {
  enum { kHeadDim = 64, kChunksPerScratch = 2, kF32Bytes = 4 };
  char expected[kMessageCapacity];
  baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.batch_size = INT32_MAX;
  desc.num_heads = 1;
  desc.num_heads_k = 1;
  desc.query_len = 1;
  desc.key_len = INT32_MAX;
  desc.head_dim = kHeadDim;
  snprintf(expected, sizeof expected,
           SELECT
           "kv_scratch bytes (2 x batch_size x num_heads_k x key_len x head_dim x element "
           "size) does not fit in 64 bits (got %d x %d x 1 x %d x %d x %d, expected a "
           "product below 2^63)",
           kChunksPerScratch, INT32_MAX, INT32_MAX, kHeadDim, kF32Bytes);
  EXPECT_SELECT_REFUSES(&desc, NULL, BARACUDA_STATUS_INVALID_PROBLEM, expected);

  /* Inside: 2 x (2^31 - 1) x 2^22 x 64 x 4 bytes < 2^62. */
  desc.key_len = 1 << 22;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);
}

/* Select checks in a fixed order; a descriptor with two defects is refused for the first. Each
 * row spoils one check and the one after it. */
static void test_select_check_order(void) {
  enum { kOdd = 7, kBadHeadDim = 12, kBadEnum = 3 };
  const baracuda_plan_preference bad_preference = {(baracuda_backend)kBadEnum};
  const baracuda_ring_attention_descriptor base = make_descriptor(BARACUDA_ELEMENT_F32);
  baracuda_ring_attention_descriptor d[12];
  for (size_t n = 0; n < sizeof d / sizeof d[0]; ++n) d[n] = base;
  d[0].element = (baracuda_element)0;
  d[0].batch_size = -1;
  d[1].num_heads_k = -1;
  d[1].key_len = -1;
  d[2].head_dim = -1;
  d[2].scale = NAN;
  d[3].scale = INFINITY;
  d[3].softcap = -1.0;
  d[4].softcap = -1.0;
  d[4].is_causal = kBadEnum;
  d[5].is_causal = kBadEnum;
  d[5].window_size_left = -kBadEnum;
  d[6].window_size_right = -kBadEnum;
  d[6].layout = (baracuda_ring_layout)kBadEnum;
  d[7].layout = (baracuda_ring_layout)kBadEnum;
  d[7].schedule = (baracuda_ring_schedule)kBadEnum;
  d[8].schedule = (baracuda_ring_schedule)kBadEnum;
  d[9].num_heads_k = kHeads + 1;
  d[10].num_heads_k = kHeads + 1;
  d[10].layout = BARACUDA_RING_LAYOUT_ZIGZAG;
  d[10].query_len = kOdd;
  d[11].layout = BARACUDA_RING_LAYOUT_ZIGZAG;
  d[11].query_len = kOdd;
  d[11].head_dim = kBadHeadDim;
  const struct {
    const baracuda_plan_preference* preference;
    baracuda_status status;
    const char* prefix;
  } expected[] = {
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "element is not an element type"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "num_heads_k must be non-negative"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "head_dim must be non-negative"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "scale must be finite"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "softcap must be finite"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "is_causal must be 0 or 1"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "window_size_right must be a bound"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "layout is not a ring layout"},
      {&bad_preference, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "schedule is not a ring schedule"},
      {&bad_preference, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "preference backend is not"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "num_heads_k must divide num_heads"},
      {NULL, BARACUDA_STATUS_INVALID_PROBLEM, SELECT "query_len must be even"},
  };
  for (size_t n = 0; n < sizeof d / sizeof d[0]; ++n) {
    select_refuses(__LINE__, &d[n], expected[n].preference, expected[n].status, expected[n].prefix,
                   0);
  }

  /* The head dim comes before the grid. */
  baracuda_ring_attention_descriptor both = base;
  both.head_dim = kBadHeadDim;
  both.batch_size = INT32_MAX;
  both.num_heads = INT32_MAX;
  both.num_heads_k = 1;
  EXPECT_SELECT_REFUSES_PREFIX(&both, NULL, BARACUDA_STATUS_UNSUPPORTED,
                               SELECT "head_dim is not a supported head dim");
}

/* Descriptors at the edges of what the checks accept. */
static void test_select_accepts_valid_descriptors(void) {
  const baracuda_plan_preference automatic = {BARACUDA_BACKEND_AUTO};
  const baracuda_plan_preference portable = {BARACUDA_BACKEND_PORTABLE};
  const double kSoftcap = 30.0;
  const double kNegativeScale = -2.5;
  const double kTinySoftcap = 1e-300;
  enum { kRightBound = 3 };
  baracuda_ring_attention_descriptor desc;

  for (int n = 0; n < kElementCount; ++n) {
    desc = make_descriptor(kElements[n]);
    EXPECT_SELECT_ACCEPTS(&desc, NULL);
    EXPECT_SELECT_ACCEPTS(&desc, &automatic);
    EXPECT_SELECT_ACCEPTS(&desc, &portable);
  }

  desc = make_descriptor(BARACUDA_ELEMENT_BF16);
  desc.is_causal = 1;
  desc.window_size_left = 0;
  desc.window_size_right = 0;
  desc.softcap = kSoftcap;
  desc.layout = BARACUDA_RING_LAYOUT_ZIGZAG;
  desc.schedule = BARACUDA_RING_SCHEDULE_SERIAL;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.window_size_left = INT32_MAX;
  desc.window_size_right = kRightBound;
  desc.scale = kNegativeScale;
  desc.softcap = -0.0;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  /* A softcap that is a normal f64 number, in the f64 compute type. */
  desc = make_descriptor(BARACUDA_ELEMENT_F64);
  desc.scale = 0.0;
  desc.softcap = kTinySoftcap;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);

  /* Empty problems: every extent but the head dim may be 0. */
  int32_t* const extents[] = {&desc.batch_size, &desc.query_len, &desc.key_len};
  for (size_t n = 0; n < sizeof extents / sizeof extents[0]; ++n) {
    desc = make_descriptor(BARACUDA_ELEMENT_F16);
    *extents[n] = 0;
    EXPECT_SELECT_ACCEPTS(&desc, NULL);
  }

  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.head_dim = kMinHeadDim;
  EXPECT_SELECT_ACCEPTS(&desc, NULL);
}

/* Every supported head dim for every element: the build has a bucket covering it or refuses it
 * naming the build's buckets, exactly as the flash plan does (the step is the flash kernel), and
 * the refusals are the head dims above the largest bucket. On a device the plan's bucket covers
 * the head dim. */
static void test_select_head_dim_buckets(void) {
  enum { kSteps = kMaxHeadDim / kHeadDimStep };
  int refusals = 0;
  for (int e = 0; e < kElementCount; ++e) {
    const baracuda_element element = kElements[e];
    int refused_below = 0;
    for (int step = 1; step <= kSteps; ++step) {
      const int head_dim = step * kHeadDimStep;
      baracuda_ring_attention_descriptor desc;
      baracuda_ring_attention_descriptor_init(&desc, 1, 1, 1, 1, head_dim, element);
      baracuda_flash_sdpa_descriptor flash;
      baracuda_flash_sdpa_descriptor_init(&flash, 1, 1, 1, 1, head_dim, head_dim, element);
      baracuda_flash_sdpa_plan flash_plan = NULL;
      const baracuda_status flash_status =
          baracuda_flash_sdpa_plan_select(&flash, NULL, &flash_plan);
      baracuda_flash_sdpa_plan_destroy(flash_plan);

      poison_last_error();
      baracuda_ring_attention_plan plan = NOT_A_PLAN;
      const baracuda_status status = baracuda_ring_attention_plan_select(&desc, NULL, &plan);
      CHECK(status == flash_status, "%s d%d: ring select %s, flash select %s",
            baracuda_element_string(element), head_dim, baracuda_status_string(status),
            baracuda_status_string(flash_status));
      if (status == BARACUDA_STATUS_UNSUPPORTED) {
        char prefix[kMessageCapacity];
        char suffix[kMessageCapacity];
        snprintf(prefix, sizeof prefix,
                 SELECT "no portable %s instance covers head dim %d in this build (got buckets [",
                 baracuda_element_string(element), head_dim);
        snprintf(suffix, sizeof suffix, "], expected one >= %d; see BARACUDA_HEAD_DIM_BUCKETS)",
                 head_dim);
        expect_message_parts(__LINE__, prefix, suffix);
        CHECK(plan == NULL, "%s d%d: a bucket refusal sets *plan to NULL",
              baracuda_element_string(element), head_dim);
        refused_below = 1;
        ++refusals;
        continue;
      }
      CHECK(!refused_below, "%s d%d is accepted although a smaller head dim was refused",
            baracuda_element_string(element), head_dim);
      if (g_device_present) {
        expect_status(__LINE__, status, BARACUDA_STATUS_SUCCESS,
                      "plan_select of a covered head dim");
        if (status == BARACUDA_STATUS_SUCCESS) {
          baracuda_kernel_sku sku;
          memset(&sku, 0, sizeof sku);
          CHECK(baracuda_ring_attention_sku(plan, &sku) == BARACUDA_STATUS_SUCCESS, "sku: %s",
                baracuda_last_error_message());
          CHECK(sku.head_dim_bucket >= head_dim, "%s d%d: bucket %d does not cover it",
                baracuda_element_string(element), head_dim, (int)sku.head_dim_bucket);
          baracuda_ring_attention_plan_destroy(plan);
        }
      } else {
        expect_status(__LINE__, status, BARACUDA_STATUS_CUDA_ERROR,
                      "plan_select of a covered head dim without a device");
        expect_no_device_message(__LINE__);
      }
    }
  }
  printf("head-dim buckets: %d of %d ring selects refused by this build's bucket list\n", refusals,
         kElementCount * kSteps);
}

/* ------------------------------------------------------------------ NULL plans */

static void test_null_plan_functions(void) {
  baracuda_ring_attention_args args;
  memset(&args, 0, sizeof args);

  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_can_implement(NULL, &args),
                BARACUDA_STATUS_INVALID_PROBLEM, "can_implement of no plan");
  expect_message(__LINE__, CI "plan is NULL (got NULL, expected a plan)");
  expect_sizes(__LINE__, 0, 0);
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_can_implement(NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "can_implement of no plan and no args");
  expect_message(__LINE__, CI "plan is NULL (got NULL, expected a plan)");

  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_run(NULL, &args, NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "run of no plan");
  expect_message(__LINE__, RUN "plan is NULL (got NULL, expected a plan)");
  expect_sizes(__LINE__, 0, 0);
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_run(NULL, NULL, NOT_A_COMM, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "run of no plan, no args, a communicator");
  expect_message(__LINE__, RUN "plan is NULL (got NULL, expected a plan)");

  const char* const kElementsMessage =
      "ring_attention_kv_scratch_elements: plan and elements must not be NULL (got NULL, "
      "expected pointers)";
  int64_t elements = 0;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_kv_scratch_elements(NULL, &elements),
                BARACUDA_STATUS_INVALID_PROBLEM, "kv_scratch_elements of no plan");
  expect_message(__LINE__, kElementsMessage);
  expect_status(__LINE__, baracuda_ring_attention_kv_scratch_elements(NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "kv_scratch_elements of no plan, no output");

  const char* const kBytesMessage =
      "ring_attention_accumulator_scratch_bytes: plan and bytes must not be NULL (got NULL, "
      "expected pointers)";
  size_t bytes = 0;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_accumulator_scratch_bytes(NULL, &bytes),
                BARACUDA_STATUS_INVALID_PROBLEM, "accumulator_scratch_bytes of no plan");
  expect_message(__LINE__, kBytesMessage);
  expect_status(__LINE__, baracuda_ring_attention_accumulator_scratch_bytes(NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "accumulator_scratch_bytes of no plan, no output");

  baracuda_kernel_sku sku;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_sku(NULL, &sku), BARACUDA_STATUS_INVALID_PROBLEM,
                "sku of no plan");
  expect_message(__LINE__,
                 "ring_attention_sku: plan and sku must not be NULL (got NULL, expected pointers)");
  expect_status(__LINE__, baracuda_ring_attention_sku(NULL, NULL), BARACUDA_STATUS_INVALID_PROBLEM,
                "sku of no plan, no output");

  baracuda_precision_guarantee guarantee;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_precision_guarantee(NULL, &guarantee),
                BARACUDA_STATUS_INVALID_PROBLEM, "precision_guarantee of no plan");
  expect_message(__LINE__,
                 "ring_attention_precision_guarantee: plan and guarantee must not be NULL (got "
                 "NULL, expected pointers)");
  expect_status(__LINE__, baracuda_ring_attention_precision_guarantee(NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "precision_guarantee of no plan, no output");

  /* No plan has no backend; destroying no plan does nothing. */
  CHECK(baracuda_ring_attention_backend(NULL) == BARACUDA_BACKEND_AUTO,
        "the backend of no plan is auto");
  baracuda_ring_attention_plan_destroy(NULL);
}

/* ------------------------------------------------------------------ argument checks (device) */

enum {
  kBufferQ,
  kBufferK,
  kBufferV,
  kBufferY,
  kBufferLse,
  kBufferSlopes,
  kBufferScratchA,
  kBufferScratchB,
  kBufferAccumulator
};

static baracuda_tensor scratch_tensor(int buffer_index, baracuda_element element,
                                      int64_t elements) {
  return contiguous_tensor(buffer_index, element, 1, &elements);
}

static baracuda_tensor make_slopes(int64_t b, int64_t h) {
  const int64_t shape[2] = {b, h};
  return contiguous_tensor(kBufferSlopes, BARACUDA_ELEMENT_F32, 2, shape);
}

/* Contiguous Q, K, V, Y, LSE, both K/V scratch buffers and the accumulator scratch, each exactly
 * as large as the plan needs; no ALiBi. */
static baracuda_ring_attention_args make_args(const baracuda_ring_attention_descriptor* d) {
  const int64_t q_shape[4] = {d->batch_size, d->num_heads, d->query_len, d->head_dim};
  const int64_t kv_shape[4] = {d->batch_size, d->num_heads_k, d->key_len, d->head_dim};
  const int64_t lse_shape[3] = {d->batch_size, d->num_heads, d->query_len};
  const int64_t kv_elements = expected_kv_scratch_elements(d);
  const int64_t accumulator_bytes = expected_accumulator_bytes(d);
  baracuda_ring_attention_args args;
  memset(&args, 0, sizeof args);
  args.q = contiguous_tensor(kBufferQ, d->element, 4, q_shape);
  args.k = contiguous_tensor(kBufferK, d->element, 4, kv_shape);
  args.v = contiguous_tensor(kBufferV, d->element, 4, kv_shape);
  args.y = contiguous_tensor(kBufferY, d->element, 4, q_shape);
  args.lse = contiguous_tensor(kBufferLse, compute_element_of(d->element), 3, lse_shape);
  args.kv_scratch_a = scratch_tensor(kBufferScratchA, d->element, kv_elements);
  args.kv_scratch_b = scratch_tensor(kBufferScratchB, d->element, kv_elements);
  args.accumulator_scratch = accumulator_bytes > 0 ? fake_buffer(kBufferAccumulator) : NULL;
  args.accumulator_scratch_bytes = (size_t)accumulator_bytes;
  return args;
}

static int is_stand_in(baracuda_ring_attention_plan plan) {
  return test_plan_is_stand_in(plan);
}

static void release_plan(baracuda_ring_attention_plan plan) {
  if (test_plan_forget(plan)) baracuda_ring_attention_plan_destroy(plan);
}

/* The two calls that check args: can_implement on the plan (unless it is a stand-in), then
 * check_args on its descriptor, whose messages carry its own name. */
enum { kCanImplementCall, kCheckArgsCall, kArgsCalls };
static const char kCheckArgsPrefix[] = "ring_attention_check_args: ";

static int call_applies(baracuda_ring_attention_plan plan, int call) {
  return call == kCheckArgsCall || !is_stand_in(plan);
}

static baracuda_status check_args_with(int call, baracuda_ring_attention_plan plan,
                                       const baracuda_ring_attention_args* args) {
  if (call == kCanImplementCall) return baracuda_ring_attention_can_implement(plan, args);
  return baracuda_ring_attention_check_args(
      (const baracuda_ring_attention_descriptor*)test_plan_descriptor(plan), args);
}

/* expected, a can_implement message (or its start), as the given call words it. */
static const char* message_for(int call, const char* expected, char* buffer, size_t capacity) {
  const size_t prefix = sizeof CI - 1;
  if (call == kCanImplementCall || strncmp(expected, CI, prefix) != 0) return expected;
  snprintf(buffer, capacity, "%s%s", kCheckArgsPrefix, expected + prefix);
  return buffer;
}

/* The status of can_implement, and that check_args agrees with it; the message left is the last
 * call's. */
static baracuda_status args_status(int line, baracuda_ring_attention_plan plan,
                                   const baracuda_ring_attention_args* args) {
  baracuda_status first = BARACUDA_STATUS_SUCCESS;
  int seen = 0;
  for (int call = 0; call < kArgsCalls; ++call) {
    if (!call_applies(plan, call)) continue;
    const baracuda_status status = check_args_with(call, plan, args);
    if (!seen) first = status;
    seen = 1;
    expect_status(line, status, first, "check_args agrees with can_implement");
  }
  return first;
}

static void args_accepted(int line, baracuda_ring_attention_plan plan,
                          const baracuda_ring_attention_args* args) {
  for (int call = 0; call < kArgsCalls; ++call) {
    if (!call_applies(plan, call)) continue;
    poison_last_error();
    expect_status(line, check_args_with(call, plan, args), BARACUDA_STATUS_SUCCESS,
                  "can_implement");
    expect_message(line, "");
    expect_sizes(line, 0, 0);
  }
}

/* can_implement refuses args with status and a message that is `message` (exact) or starts with
 * it and ends with `suffix`; the sizes are needed / got (0 / 0 for other statuses). */
static void args_refused(int line, baracuda_ring_attention_plan plan,
                         const baracuda_ring_attention_args* args, baracuda_status expected,
                         const char* message, const char* suffix, int64_t needed, int64_t got) {
  for (int call = 0; call < kArgsCalls; ++call) {
    if (!call_applies(plan, call)) continue;
    char buffer[kMessageCapacity];
    const char* worded = message_for(call, message, buffer, sizeof buffer);
    poison_last_error();
    expect_status(line, check_args_with(call, plan, args), expected, "can_implement");
    if (suffix == NULL)
      expect_message(line, worded);
    else
      expect_message_parts(line, worded, suffix);
    expect_sizes(line, needed, got);
  }
}

#define EXPECT_ACCEPTED(plan, args) args_accepted(__LINE__, (plan), (args))
#define EXPECT_INVALID(plan, args, message) \
  args_refused(__LINE__, (plan), (args), BARACUDA_STATUS_INVALID_PROBLEM, (message), NULL, 0, 0)
#define EXPECT_INVALID_PARTS(plan, args, prefix, suffix) \
  args_refused(__LINE__, (plan), (args), BARACUDA_STATUS_INVALID_PROBLEM, (prefix), (suffix), 0, 0)

/* A plan for desc (test_plans.h): selected with a device, a stand-in without one. */
static baracuda_ring_attention_plan select_plan(const baracuda_ring_attention_descriptor* desc) {
  baracuda_ring_attention_plan plan = NULL;
  if (g_device_present) {
    const baracuda_status status = baracuda_ring_attention_plan_select(desc, NULL, &plan);
    CHECK(status == BARACUDA_STATUS_SUCCESS, "select of a valid descriptor: %s",
          baracuda_last_error_message());
    if (status != BARACUDA_STATUS_SUCCESS) return NULL;
  }
  void* registered = test_plan_register(plan, desc, sizeof *desc);
  CHECK(registered != NULL, "at most %d plans at once", kMaxTestPlans);
  if (registered == NULL) baracuda_ring_attention_plan_destroy(plan);
  return (baracuda_ring_attention_plan)registered;
}

/* Sizes and names: what a selected plan reports. */
static void test_plan_queries(void) {
  for (int e = 0; e < kElementCount; ++e) {
    const baracuda_element element = kElements[e];
    const char* name = baracuda_element_string(element);
    const baracuda_ring_attention_descriptor desc = make_descriptor(element);
    baracuda_ring_attention_plan plan = select_plan(&desc);
    if (plan == NULL) continue;

    int64_t elements = -1;
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_kv_scratch_elements(plan, &elements),
                  BARACUDA_STATUS_SUCCESS, "kv_scratch_elements");
    expect_message(__LINE__, "");
    CHECK(elements == expected_kv_scratch_elements(&desc),
          "%s kv_scratch_elements %lld, expected 2 x B x Hk x Sk x D = %lld", name,
          (long long)elements, (long long)expected_kv_scratch_elements(&desc));

    size_t bytes = 0;
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_accumulator_scratch_bytes(plan, &bytes),
                  BARACUDA_STATUS_SUCCESS, "accumulator_scratch_bytes");
    expect_message(__LINE__, "");
    CHECK((int64_t)bytes == expected_accumulator_bytes(&desc),
          "%s accumulator_scratch_bytes %zu, expected B x H x Sq x (D + 2) x %zu = %lld", name,
          bytes, baracuda_element_size(compute_element_of(element)),
          (long long)expected_accumulator_bytes(&desc));

    baracuda_kernel_sku sku;
    memset(&sku, 0, sizeof sku);
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_sku(plan, &sku), BARACUDA_STATUS_SUCCESS,
                  "sku");
    expect_message(__LINE__, "");
    CHECK(baracuda_ring_attention_backend(plan) == expected_backend(element, sku.arch, NULL),
          "%s plan backend follows the rule (got %s)", name,
          baracuda_backend_string(baracuda_ring_attention_backend(plan)));
    CHECK(sku.backend == baracuda_ring_attention_backend(plan), "%s sku backend %d", name,
          (int)sku.backend);
    CHECK(sku.element == element, "%s sku element %d", name, (int)sku.element);
    CHECK(sku.head_dim_bucket >= kHeadDim && sku.head_dim_bucket <= kMaxHeadDim,
          "%s sku bucket %d for head dim %d", name, (int)sku.head_dim_bucket, kHeadDim);
    CHECK(sku.arch >= kPortableMinArch, "%s sku arch %d", name, (int)sku.arch);
    char expected_name[kMessageCapacity];
    expected_sku_name(expected_name, sizeof expected_name, "ring_attention", &sku);
    CHECK(sku.name != NULL && strcmp(sku.name, expected_name) == 0,
          "sku name \"%s\", expected \"%s\"", sku.name != NULL ? sku.name : "(NULL)",
          expected_name);

    baracuda_precision_guarantee guarantee;
    memset(&guarantee, 0, sizeof guarantee);
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_precision_guarantee(plan, &guarantee),
                  BARACUDA_STATUS_SUCCESS, "precision_guarantee");
    expect_message(__LINE__, "");
    CHECK(guarantee.accumulator == compute_element_of(element), "%s accumulator %s", name,
          baracuda_element_string(guarantee.accumulator));
    CHECK(guarantee.math_precision == compute_element_of(element), "%s math precision %s", name,
          baracuda_element_string(guarantee.math_precision));
    CHECK(guarantee.deterministic == 1, "%s deterministic %d", name, (int)guarantee.deterministic);

    /* NULL outputs of a real plan. */
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_kv_scratch_elements(plan, NULL),
                  BARACUDA_STATUS_INVALID_PROBLEM, "kv_scratch_elements with no output");
    expect_message_parts(__LINE__, "ring_attention_kv_scratch_elements: ", "");
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_accumulator_scratch_bytes(plan, NULL),
                  BARACUDA_STATUS_INVALID_PROBLEM, "accumulator_scratch_bytes with no output");
    expect_message_parts(__LINE__, "ring_attention_accumulator_scratch_bytes: ", "");
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_sku(plan, NULL),
                  BARACUDA_STATUS_INVALID_PROBLEM, "sku with no output");
    expect_message_parts(__LINE__, "ring_attention_sku: ", "");
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_precision_guarantee(plan, NULL),
                  BARACUDA_STATUS_INVALID_PROBLEM, "precision_guarantee with no output");
    expect_message_parts(__LINE__, "ring_attention_precision_guarantee: ", "");
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_can_implement(plan, NULL),
                  BARACUDA_STATUS_INVALID_PROBLEM, "can_implement with no args");
    expect_message(__LINE__, CI "args is NULL (got NULL, expected args)");
    release_plan(plan);
  }
}

/* ------------------------------------------------------------------ argument cases */

/* The element counts and accumulator bytes of make_args for the f16 problem of the argument
 * checks, as the tables below state them. */
enum {
  kQElements = kBatch * kHeads * kQueryLen * kHeadDim, /* Q and Y: 1536 */
  kKvElements = kBatch * kHeadsK * kKeyLen * kHeadDim, /* K and V: 1280 */
  kLseElements = kBatch * kHeads * kQueryLen,          /* 48 */
  kSlopeElements = kBatch * kHeads,                    /* ALiBi [B, H]: 8 */
  kKvScratchElements = kKvTensors * kKvElements,       /* each K/V scratch buffer: 2560 */
  kAccumulatorElementBytes = 4,                        /* the accumulators of f16 are f32 */
  /* o, m and l of every query row: 6528 */
  kAccumulatorBytes = kBatch * kHeads * kQueryLen * (kHeadDim + kAccumulatorRowExtras) *
      kAccumulatorElementBytes
};

/* The tensors of the args, as the cases name them. */
typedef enum TensorName { kQ, kK, kV, kY, kLse, kSlopes, kScratchA, kScratchB } TensorName;

/* One change to the args: to one tensor, or to the accumulator scratch's byte count. */
typedef enum EditKind {
  kNoEdit, /* the end of a case's edits */
  kClear,  /* the tensor absent: all zero */
  kSetRank,
  kSetElement,
  kSetShape,  /* of the axis */
  kSetStride, /* of the axis */
  kSetNullData,
  kAddBuffer, /* buffer_elements += value */
  kSetBuffer, /* buffer_elements = value */
  kSetAccumulatorBytes
} EditKind;

typedef struct ArgsEdit {
  EditKind kind;
  TensorName tensor;
  int axis;
  int64_t value;
} ArgsEdit;

#define CLEAR(tensor) {kClear, (tensor), 0, 0}
#define RANK(tensor, rank) {kSetRank, (tensor), 0, (rank)}
#define ELEMENT(tensor, element) {kSetElement, (tensor), 0, (element)}
#define SHAPE(tensor, axis, extent) {kSetShape, (tensor), (axis), (extent)}
#define STRIDE(tensor, axis, stride) {kSetStride, (tensor), (axis), (stride)}
#define NULL_DATA(tensor) {kSetNullData, (tensor), 0, 0}
#define ADD_BUFFER(tensor, elements) {kAddBuffer, (tensor), 0, (elements)}
#define SET_BUFFER(tensor, elements) {kSetBuffer, (tensor), 0, (elements)}
#define ACCUMULATOR_BYTES(bytes) {kSetAccumulatorBytes, kQ, 0, (bytes)}

enum { kMaxEdits = 3 };

/* Valid args spoilt in one way, and the refusal of can_implement and check_args: the status, the
 * message (exact, or, when suffix is set, its start, with suffix its end) and the sizes left
 * (needed / got; 0 / 0 unless the status is a size's). A case starts from the valid args, with
 * contiguous ALiBi slopes of the given shape when it is not [0, 0], then applies its edits in
 * order. */
typedef struct ArgsCase {
  int line; /* of the case in its table, where a failing check is reported */
  const char* name;
  baracuda_status status;
  const char* message;
  ArgsEdit edits[kMaxEdits];
  const char* suffix;
  int64_t slopes[2];
  int64_t needed;
  int64_t got;
} ArgsCase;

static baracuda_tensor* tensor_of(baracuda_ring_attention_args* args, TensorName name) {
  switch (name) {
    case kQ: return &args->q;
    case kK: return &args->k;
    case kV: return &args->v;
    case kY: return &args->y;
    case kLse: return &args->lse;
    case kSlopes: return &args->alibi_slopes;
    case kScratchA: return &args->kv_scratch_a;
    case kScratchB: return &args->kv_scratch_b;
  }
  return NULL;
}

static void apply_edit(baracuda_ring_attention_args* args, const ArgsEdit* edit) {
  baracuda_tensor* const tensor = tensor_of(args, edit->tensor);
  switch (edit->kind) {
    case kNoEdit: break;
    case kClear: memset(tensor, 0, sizeof *tensor); break;
    case kSetRank: tensor->rank = (int32_t)edit->value; break;
    case kSetElement: tensor->element = (baracuda_element)edit->value; break;
    case kSetShape: tensor->shape[edit->axis] = edit->value; break;
    case kSetStride: tensor->strides[edit->axis] = edit->value; break;
    case kSetNullData: tensor->data = NULL; break;
    case kAddBuffer: tensor->buffer_elements += edit->value; break;
    case kSetBuffer: tensor->buffer_elements = edit->value; break;
    case kSetAccumulatorBytes: args->accumulator_scratch_bytes = (size_t)edit->value; break;
  }
}

/* Each case on `valid`, through args_refused; a failing case's name follows the messages of its
 * failed checks. */
static void expect_args_cases(baracuda_ring_attention_plan plan,
                              const baracuda_ring_attention_args* valid, const ArgsCase* cases,
                              size_t count) {
  for (size_t n = 0; n < count; ++n) {
    const ArgsCase* c = &cases[n];
    baracuda_ring_attention_args args = *valid;
    if (c->slopes[0] != 0 || c->slopes[1] != 0) {
      args.alibi_slopes = make_slopes(c->slopes[0], c->slopes[1]);
    }
    for (int e = 0; e < kMaxEdits; ++e) apply_edit(&args, &c->edits[e]);
    const int failures = g_failures;
    args_refused(c->line, plan, &args, c->status, c->message, c->suffix, c->needed, c->got);
    if (g_failures != failures) fprintf(stderr, "    in args case \"%s\"\n", c->name);
  }
}

#define EXPECT_ARGS_CASES(plan, valid, cases) \
  expect_args_cases((plan), (valid), (cases), sizeof(cases) / sizeof((cases)[0]))

/* Q, K, V, Y and LSE: present or absent, rank, element, shape, strides, data, buffers. Q, Y
 * [2, 4, 6, 32], K, V [2, 2, 10, 32], LSE [2, 4, 6]. */
static void test_args_tensors(baracuda_ring_attention_plan plan,
                              const baracuda_ring_attention_descriptor* desc) {
  const baracuda_ring_attention_args valid = make_args(desc);
  baracuda_ring_attention_args args = valid;
  EXPECT_ACCEPTED(plan, &args);

  /* K and V are optional, together; LSE is optional. */
  memset(&args.k, 0, sizeof args.k);
  memset(&args.v, 0, sizeof args.v);
  EXPECT_ACCEPTED(plan, &args);
  args = valid;
  memset(&args.lse, 0, sizeof args.lse);
  EXPECT_ACCEPTED(plan, &args);

  /* B, S, H, D layouts passed as strided views, K and V included (staging copies them). */
  args = valid;
  const int64_t q_bshd[4] = {(int64_t)kQueryLen * kHeads * kHeadDim, kHeadDim,
                             (int64_t)kHeads * kHeadDim, 1};
  const int64_t kv_bshd[4] = {(int64_t)kKeyLen * kHeadsK * kHeadDim, kHeadDim,
                              (int64_t)kHeadsK * kHeadDim, 1};
  for (int axis = 0; axis < 4; ++axis) {
    args.q.strides[axis] = q_bshd[axis];
    args.y.strides[axis] = q_bshd[axis];
    args.k.strides[axis] = kv_bshd[axis];
    args.v.strides[axis] = kv_bshd[axis];
  }
  EXPECT_ACCEPTED(plan, &args);

  /* One of K and V; each tensor's rank, element and one extent against the descriptor; Q and Y
   * with a strided last axis (UNSUPPORTED), a negative stride, written Y and LSE broadcast; NULL
   * data; each buffer one element short of its view (BUFFER_TOO_SMALL, with the sizes). */
  static const ArgsCase kCases[] = {
      {__LINE__, "v absent", INVALID,
       CI "k and v go together (got k present and v absent, expected both, to be staged into "
          "kv_scratch_a, or neither, when kv_scratch_a holds them already)",
       .edits = {CLEAR(kV)}},
      {__LINE__, "k absent", INVALID,
       CI "k and v go together (got k absent and v present, expected both, to be staged into "
          "kv_scratch_a, or neither, when kv_scratch_a holds them already)",
       .edits = {CLEAR(kK)}},

      {__LINE__, "q rank 3", INVALID, CI "q rank mismatch (got 3, expected 4)",
       .edits = {RANK(kQ, 3)}},
      {__LINE__, "k rank 3", INVALID, CI "k rank mismatch (got 3, expected 4)",
       .edits = {RANK(kK, 3)}},
      {__LINE__, "v rank 2", INVALID, CI "v rank mismatch (got 2, expected 4)",
       .edits = {RANK(kV, 2)}},
      {__LINE__, "y rank 3", INVALID, CI "y rank mismatch (got 3, expected 4)",
       .edits = {RANK(kY, 3)}},
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
      {__LINE__, "lse f16", INVALID, CI "lse element mismatch (got f16, expected f32)",
       .edits = {ELEMENT(kLse, BARACUDA_ELEMENT_F16)}},

      {__LINE__, "q heads Hk", INVALID,
       CI "q shape mismatch (got [2, 2, 6, 32], expected [2, 4, 6, 32])",
       .edits = {SHAPE(kQ, 1, kHeadsK)}},
      {__LINE__, "k heads H", INVALID,
       CI "k shape mismatch (got [2, 4, 10, 32], expected [2, 2, 10, 32])",
       .edits = {SHAPE(kK, 1, kHeads)}},
      {__LINE__, "v rows Sq", INVALID,
       CI "v shape mismatch (got [2, 2, 6, 32], expected [2, 2, 10, 32])",
       .edits = {SHAPE(kV, 2, kQueryLen)}},
      {__LINE__, "y head dim D / 2", INVALID,
       CI "y shape mismatch (got [2, 4, 6, 16], expected [2, 4, 6, 32])",
       .edits = {SHAPE(kY, 3, kHeadDim / 2)}},
      {__LINE__, "lse rows Sk", INVALID,
       CI "lse shape mismatch (got [2, 4, 10], expected [2, 4, 6])",
       .edits = {SHAPE(kLse, 2, kKeyLen)}},

      {__LINE__, "q last-axis stride 2", UNSUPPORTED,
       CI "q last-axis stride must be 1 (got 2, expected 1)",
       .edits = {STRIDE(kQ, 3, 2), SET_BUFFER(kQ, 2 * kQElements)}},
      {__LINE__, "y last-axis stride 2", UNSUPPORTED,
       CI "y last-axis stride must be 1 (got 2, expected 1)",
       .edits = {STRIDE(kY, 3, 2), SET_BUFFER(kY, 2 * kQElements)}},
      {__LINE__, "q stride -1", INVALID,
       CI "q stride of axis 0 is negative (got -1, expected >= 0)", .edits = {STRIDE(kQ, 0, -1)}},
      {__LINE__, "y broadcast", INVALID,
       CI "y is written, so axis 1 (extent 4) cannot broadcast (got stride 0, expected > 0)",
       .edits = {STRIDE(kY, 1, 0)}},
      {__LINE__, "lse broadcast", INVALID,
       CI "lse is written, so axis 2 (extent 6) cannot broadcast (got stride 0, expected > 0)",
       .edits = {STRIDE(kLse, 2, 0)}},

      {__LINE__, "q NULL", INVALID,
       CI "q data is NULL (got NULL, expected a device pointer to 1536 elements)",
       .edits = {NULL_DATA(kQ)}},
      {__LINE__, "k NULL", INVALID,
       CI "k data is NULL (got NULL, expected a device pointer to 1280 elements)",
       .edits = {NULL_DATA(kK)}},
      {__LINE__, "y NULL", INVALID,
       CI "y data is NULL (got NULL, expected a device pointer to 1536 elements)",
       .edits = {NULL_DATA(kY)}},

      {__LINE__, "q buffer short", TOO_SMALL,
       CI "q buffer too small (got 1535 elements, expected at least 1536)",
       .edits = {ADD_BUFFER(kQ, -1)}, .needed = kQElements, .got = kQElements - 1},
      {__LINE__, "k buffer short", TOO_SMALL,
       CI "k buffer too small (got 1279 elements, expected at least 1280)",
       .edits = {ADD_BUFFER(kK, -1)}, .needed = kKvElements, .got = kKvElements - 1},
      {__LINE__, "v buffer short", TOO_SMALL,
       CI "v buffer too small (got 1279 elements, expected at least 1280)",
       .edits = {ADD_BUFFER(kV, -1)}, .needed = kKvElements, .got = kKvElements - 1},
      {__LINE__, "y buffer short", TOO_SMALL,
       CI "y buffer too small (got 1535 elements, expected at least 1536)",
       .edits = {ADD_BUFFER(kY, -1)}, .needed = kQElements, .got = kQElements - 1},
      {__LINE__, "lse buffer short", TOO_SMALL,
       CI "lse buffer too small (got 47 elements, expected at least 48)",
       .edits = {ADD_BUFFER(kLse, -1)}, .needed = kLseElements, .got = kLseElements - 1},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);
}

/* ALiBi slopes: f32, rank 2, [1, H] or [B, H], a buffer to match. */
static void test_args_alibi(baracuda_ring_attention_plan plan,
                            const baracuda_ring_attention_descriptor* desc) {
  const baracuda_ring_attention_args valid = make_args(desc);
  baracuda_ring_attention_args args = valid;
  args.alibi_slopes = make_slopes(1, kHeads);
  EXPECT_ACCEPTED(plan, &args);
  args.alibi_slopes = make_slopes(kBatch, kHeads);
  EXPECT_ACCEPTED(plan, &args);

  /* One head or one batch too many, the plan's element, rank 1, one element short. */
  static const ArgsCase kCases[] = {
      {__LINE__, "slopes [B, H + 1]", INVALID,
       CI "alibi_slopes shape mismatch (got [2, 5], expected [1, 4] or [2, 4])",
       .slopes = {kBatch, kHeads + 1}},
      {__LINE__, "slopes [B + 1, H]", INVALID,
       CI "alibi_slopes shape mismatch (got [3, 4], expected [1, 4] or [2, 4])",
       .slopes = {kBatch + 1, kHeads}},
      {__LINE__, "slopes f16", INVALID, CI "alibi_slopes element mismatch (got f16, expected f32)",
       .edits = {ELEMENT(kSlopes, BARACUDA_ELEMENT_F16)}, .slopes = {kBatch, kHeads}},
      {__LINE__, "slopes rank 1", INVALID, CI "alibi_slopes rank mismatch (got 1, expected 2)",
       .edits = {RANK(kSlopes, 1), SHAPE(kSlopes, 0, kHeads)}, .slopes = {1, kHeads}},
      {__LINE__, "slopes buffer short", TOO_SMALL,
       CI "alibi_slopes buffer too small (got 7 elements, expected at least 8)",
       .edits = {ADD_BUFFER(kSlopes, -1)}, .slopes = {kBatch, kHeads}, .needed = kSlopeElements,
       .got = kSlopeElements - 1},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);
}

/* The two K/V scratch buffers: rank 1 of the element, contiguous, large enough, distinct. */
static void test_args_kv_scratch(baracuda_ring_attention_plan plan,
                                 const baracuda_ring_attention_descriptor* desc) {
  const baracuda_ring_attention_args valid = make_args(desc);
  const int64_t needed = expected_kv_scratch_elements(desc);
  const int64_t needed_bytes = needed * (int64_t)baracuda_element_size(desc->element);
  char expected[kMessageCapacity];

  /* Larger than needed is fine. */
  for (int which = 0; which < 2; ++which) {
    baracuda_ring_attention_args args = valid;
    baracuda_tensor* scratch = which == 0 ? &args.kv_scratch_a : &args.kv_scratch_b;
    scratch->shape[0] = needed + 1;
    scratch->buffer_elements = needed + 1;
    EXPECT_ACCEPTED(plan, &args);
  }

  /* Each buffer of rank 2, of f32, strided, too few elements (by the view's extent, by the
   * buffer, by both; BUFFER_TOO_SMALL with the sizes), without data. */
  static const ArgsCase kCases[] = {
      {__LINE__, "kv_scratch_a rank 2", INVALID,
       CI "kv_scratch_a rank mismatch (got 2, expected 1)",
       .edits = {RANK(kScratchA, 2), SHAPE(kScratchA, 1, 1), STRIDE(kScratchA, 1, 1)}},
      {__LINE__, "kv_scratch_a f32", INVALID,
       CI "kv_scratch_a element mismatch (got f32, expected f16)",
       .edits = {ELEMENT(kScratchA, BARACUDA_ELEMENT_F32)}},
      {__LINE__, "kv_scratch_a stride 2", INVALID,
       CI "kv_scratch_a must be contiguous (got stride 2, expected 1)",
       .edits = {STRIDE(kScratchA, 0, 2), SET_BUFFER(kScratchA, 2 * kKvScratchElements)}},
      {__LINE__, "kv_scratch_a short view and buffer", TOO_SMALL,
       CI "kv_scratch_a holds too few elements for K then V (got 2559, expected at least 2560 = "
          "kv_scratch_elements)",
       .edits = {SHAPE(kScratchA, 0, kKvScratchElements - 1),
                 SET_BUFFER(kScratchA, kKvScratchElements - 1)},
       .needed = kKvScratchElements, .got = kKvScratchElements - 1},
      {__LINE__, "kv_scratch_a short buffer", TOO_SMALL,
       CI "kv_scratch_a holds too few elements for K then V (got 2559, expected at least 2560 = "
          "kv_scratch_elements)",
       .edits = {SET_BUFFER(kScratchA, kKvScratchElements - 1)}, .needed = kKvScratchElements,
       .got = kKvScratchElements - 1},
      {__LINE__, "kv_scratch_a short view", TOO_SMALL,
       CI "kv_scratch_a holds too few elements for K then V (got 2559, expected at least 2560 = "
          "kv_scratch_elements)",
       .edits = {SHAPE(kScratchA, 0, kKvScratchElements - 1)}, .needed = kKvScratchElements,
       .got = kKvScratchElements - 1},
      {__LINE__, "kv_scratch_a NULL", INVALID, CI "kv_scratch_a data is NULL (got NULL",
       .edits = {NULL_DATA(kScratchA)}, .suffix = ")"},

      {__LINE__, "kv_scratch_b rank 2", INVALID,
       CI "kv_scratch_b rank mismatch (got 2, expected 1)",
       .edits = {RANK(kScratchB, 2), SHAPE(kScratchB, 1, 1), STRIDE(kScratchB, 1, 1)}},
      {__LINE__, "kv_scratch_b f32", INVALID,
       CI "kv_scratch_b element mismatch (got f32, expected f16)",
       .edits = {ELEMENT(kScratchB, BARACUDA_ELEMENT_F32)}},
      {__LINE__, "kv_scratch_b stride 2", INVALID,
       CI "kv_scratch_b must be contiguous (got stride 2, expected 1)",
       .edits = {STRIDE(kScratchB, 0, 2), SET_BUFFER(kScratchB, 2 * kKvScratchElements)}},
      {__LINE__, "kv_scratch_b short view and buffer", TOO_SMALL,
       CI "kv_scratch_b holds too few elements for K then V (got 2559, expected at least 2560 = "
          "kv_scratch_elements)",
       .edits = {SHAPE(kScratchB, 0, kKvScratchElements - 1),
                 SET_BUFFER(kScratchB, kKvScratchElements - 1)},
       .needed = kKvScratchElements, .got = kKvScratchElements - 1},
      {__LINE__, "kv_scratch_b short buffer", TOO_SMALL,
       CI "kv_scratch_b holds too few elements for K then V (got 2559, expected at least 2560 = "
          "kv_scratch_elements)",
       .edits = {SET_BUFFER(kScratchB, kKvScratchElements - 1)}, .needed = kKvScratchElements,
       .got = kKvScratchElements - 1},
      {__LINE__, "kv_scratch_b short view", TOO_SMALL,
       CI "kv_scratch_b holds too few elements for K then V (got 2559, expected at least 2560 = "
          "kv_scratch_elements)",
       .edits = {SHAPE(kScratchB, 0, kKvScratchElements - 1)}, .needed = kKvScratchElements,
       .got = kKvScratchElements - 1},
      {__LINE__, "kv_scratch_b NULL", INVALID, CI "kv_scratch_b data is NULL (got NULL",
       .edits = {NULL_DATA(kScratchB)}, .suffix = ")"},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);

  /* The same buffer twice, partly overlapping buffers, and adjacent ones (accepted); the
   * messages hold the pointers. */
  baracuda_ring_attention_args args = valid;
  args.kv_scratch_b.data = args.kv_scratch_a.data;
  snprintf(expected, sizeof expected,
           " for %lld bytes, expected kv_scratch_a to share no byte with another argument)",
           (long long)needed_bytes);
  const char* const shared = CI "kv_scratch_a and kv_scratch_b share memory (got kv_scratch_a at ";
  EXPECT_INVALID_PARTS(plan, &args, shared, expected);
  args = valid;
  args.kv_scratch_b.data = (unsigned char*)args.kv_scratch_a.data + needed_bytes / 2;
  EXPECT_INVALID_PARTS(plan, &args, shared, expected);
  args = valid;
  args.kv_scratch_b.data = (unsigned char*)args.kv_scratch_a.data - needed_bytes / 2;
  EXPECT_INVALID_PARTS(plan, &args, shared, expected);
  args = valid;
  args.kv_scratch_b.data = (unsigned char*)args.kv_scratch_a.data + needed_bytes;
  EXPECT_ACCEPTED(plan, &args);
}

/* The accumulator scratch: large enough, present, 16-byte aligned, apart from the K/V scratch. */
static void test_args_accumulator_scratch(baracuda_ring_attention_plan plan,
                                          const baracuda_ring_attention_descriptor* desc) {
  const baracuda_ring_attention_args valid = make_args(desc);
  const int64_t needed = expected_accumulator_bytes(desc);
  char suffix[kMessageCapacity];
  baracuda_ring_attention_args args = valid;

  args.accumulator_scratch_bytes = (size_t)needed + kAccumulatorAlignment;
  EXPECT_ACCEPTED(plan, &args);

  /* One byte short, and none (WORKSPACE_TOO_SMALL, with the sizes). */
  static const ArgsCase kCases[] = {
      {__LINE__, "accumulator_scratch one byte short", WORKSPACE_TOO_SMALL,
       CI "accumulator_scratch too small (got 6527 bytes",
       .edits = {ACCUMULATOR_BYTES(kAccumulatorBytes - 1)},
       .suffix = ", expected at least 6528 bytes = accumulator_scratch_bytes)",
       .needed = kAccumulatorBytes, .got = kAccumulatorBytes - 1},
      {__LINE__, "accumulator_scratch 0 bytes", WORKSPACE_TOO_SMALL,
       CI "accumulator_scratch too small (got 0 bytes", .edits = {ACCUMULATOR_BYTES(0)},
       .suffix = ", expected at least 6528 bytes = accumulator_scratch_bytes)",
       .needed = kAccumulatorBytes, .got = 0},
  };
  EXPECT_ARGS_CASES(plan, &valid, kCases);

  /* No scratch although enough bytes are claimed. */
  args = valid;
  args.accumulator_scratch = NULL;
  poison_last_error();
  const baracuda_status status = args_status(__LINE__, plan, &args);
  CHECK(status == BARACUDA_STATUS_INVALID_PROBLEM || status == BARACUDA_STATUS_WORKSPACE_TOO_SMALL,
        "NULL accumulator_scratch: status %s", baracuda_status_string(status));
  /* check_args ran last. */
  expect_message_parts(__LINE__, "ring_attention_check_args: accumulator_scratch ", "");

  args = valid;
  args.accumulator_scratch = (unsigned char*)args.accumulator_scratch + kMisalignment;
  snprintf(suffix, sizeof suffix, ", expected a multiple of %d bytes)", kAccumulatorAlignment);
  EXPECT_INVALID_PARTS(plan, &args, CI "accumulator_scratch is misaligned (got ", suffix);

  /* The accumulators must not share bytes with a K/V scratch buffer. */
  args = valid;
  args.accumulator_scratch = args.kv_scratch_b.data;
  EXPECT_INVALID_PARTS(plan, &args, CI "kv_scratch_b and accumulator_scratch share memory (got ",
                       ", expected kv_scratch_b to share no byte with another argument)");
  args = valid;
  args.accumulator_scratch = args.kv_scratch_a.data;
  EXPECT_INVALID_PARTS(plan, &args, CI "kv_scratch_a and accumulator_scratch share memory (got ",
                       ", expected kv_scratch_a to share no byte with another argument)");
}

/* The memory rules: aligned data, written bytes (y, lse, the three scratch buffers) shared with
 * no other argument, every range inside memory. */
static void test_args_memory(baracuda_ring_attention_plan plan,
                             const baracuda_ring_attention_descriptor* desc) {
  const baracuda_ring_attention_args valid = make_args(desc);
  char expected[kMessageCapacity];
  baracuda_ring_attention_args args = valid;
  args.kv_scratch_a.data = (unsigned char*)valid.kv_scratch_a.data + 1;
  snprintf(expected, sizeof expected,
           CI "kv_scratch_a data is misaligned for f16 (got %p, expected a multiple of 2 bytes)",
           args.kv_scratch_a.data);
  EXPECT_INVALID(plan, &args, expected);
  args = valid;
  args.y.data = (unsigned char*)valid.y.data + 1;
  snprintf(expected, sizeof expected,
           CI "y data is misaligned for f16 (got %p, expected a multiple of 2 bytes)", args.y.data);
  EXPECT_INVALID(plan, &args, expected);

  /* q or y inside a scratch buffer; y on q; lse folded onto itself. */
  args = valid;
  args.q.data = valid.kv_scratch_b.data;
  EXPECT_INVALID_PARTS(plan, &args, CI "kv_scratch_b and q share memory (got kv_scratch_b at ",
                       ", expected kv_scratch_b to share no byte with another argument)");
  args = valid;
  args.y.data = valid.accumulator_scratch;
  EXPECT_INVALID_PARTS(plan, &args, CI "y and accumulator_scratch share memory (got y at ",
                       ", expected y to share no byte with another argument)");
  args = valid;
  args.y.data = valid.q.data;
  EXPECT_INVALID_PARTS(plan, &args, CI "y and q share memory (got y at ",
                       ", expected y to share no byte with another argument)");
  args = valid;
  args.k.data = valid.kv_scratch_a.data;
  EXPECT_INVALID_PARTS(plan, &args, CI "kv_scratch_a and k share memory (got kv_scratch_a at ",
                       ", expected kv_scratch_a to share no byte with another argument)");
  args = valid;
  for (int axis = 0; axis < 3; ++axis) args.lse.strides[axis] = 1;
  EXPECT_INVALID_PARTS(plan, &args, CI "lse is written, so no two of its elements may share memory",
                       "");
  /* Inputs may share bytes. */
  args = valid;
  args.v.data = valid.k.data;
  EXPECT_ACCEPTED(plan, &args);

  args = valid;
  args.accumulator_scratch = (void*)(~(uintptr_t)0 - 15);
  EXPECT_INVALID_PARTS(plan, &args, CI "accumulator_scratch runs past the end of the address space",
                       ", expected a range inside memory)");
}

/* check_args runs the descriptor checks of select first, under its own name, and needs no
 * plan. */
static void test_check_args_descriptor(void) {
  baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F16);
  const baracuda_ring_attention_args args = make_args(&desc);
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_check_args(NULL, &args),
                BARACUDA_STATUS_INVALID_PROBLEM, "check_args without a descriptor");
  expect_message(__LINE__,
                 "ring_attention_check_args: desc is NULL (got NULL, expected a "
                 "descriptor)");
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_check_args(&desc, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "check_args without args");
  expect_message(__LINE__, "ring_attention_check_args: args is NULL (got NULL, expected args)");
  desc.layout = (baracuda_ring_layout)7;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_check_args(&desc, &args),
                BARACUDA_STATUS_INVALID_PROBLEM, "check_args with a bad layout");
  expect_message(__LINE__,
                 "ring_attention_check_args: layout is not a ring layout (got 7, "
                 "expected BARACUDA_RING_LAYOUT_CONTIGUOUS or "
                 "BARACUDA_RING_LAYOUT_ZIGZAG)");
}

/* LSE and the scratch buffers follow the element: LSE and accumulators f64 for f64, f32
 * otherwise; the K/V scratch is of the element; ALiBi slopes are f32 throughout. */
static void test_args_per_element(void) {
  for (int e = 0; e < kElementCount; ++e) {
    const baracuda_element element = kElements[e];
    const baracuda_element lse = compute_element_of(element);
    const baracuda_ring_attention_descriptor desc = make_descriptor(element);
    baracuda_ring_attention_plan plan = select_plan(&desc);
    if (plan == NULL) continue;
    baracuda_ring_attention_args args = make_args(&desc);
    args.alibi_slopes = make_slopes(kBatch, kHeads);
    EXPECT_ACCEPTED(plan, &args);

    char expected[kMessageCapacity];
    const baracuda_element wrong_lse =
        element == BARACUDA_ELEMENT_F64 ? BARACUDA_ELEMENT_F32 : BARACUDA_ELEMENT_F64;
    baracuda_ring_attention_args wrong = args;
    wrong.lse.element = wrong_lse;
    snprintf(expected, sizeof expected, CI "lse element mismatch (got %s, expected %s)",
             baracuda_element_string(wrong_lse), baracuda_element_string(lse));
    EXPECT_INVALID(plan, &wrong, expected);

    const baracuda_element wrong_scratch =
        element == BARACUDA_ELEMENT_F32 ? BARACUDA_ELEMENT_F64 : BARACUDA_ELEMENT_F32;
    wrong = args;
    wrong.kv_scratch_a.element = wrong_scratch;
    snprintf(expected, sizeof expected, CI "kv_scratch_a element mismatch (got %s, expected %s)",
             baracuda_element_string(wrong_scratch), baracuda_element_string(element));
    EXPECT_INVALID(plan, &wrong, expected);

    /* An accumulator scratch sized for f32 is too small for f64. */
    if (element == BARACUDA_ELEMENT_F64) {
      const int64_t needed = expected_accumulator_bytes(&desc);
      const int64_t f32_bytes = needed / (int64_t)(sizeof(double) / sizeof(float));
      wrong = args;
      wrong.accumulator_scratch_bytes = (size_t)f32_bytes;
      char prefix[kMessageCapacity];
      snprintf(prefix, sizeof prefix,
               CI
               "accumulator_scratch too small (got %lld bytes, "
               "expected at least %lld bytes = accumulator_scratch_bytes)",
               (long long)f32_bytes, (long long)needed);
      args_refused(__LINE__, plan, &wrong, BARACUDA_STATUS_WORKSPACE_TOO_SMALL, prefix, "", needed,
                   f32_bytes);
    }
    release_plan(plan);
  }
}

/* run checks the args as can_implement does, under its own name, before anything else. */
static void test_run_checks(baracuda_ring_attention_plan plan,
                            const baracuda_ring_attention_descriptor* desc) {
  const baracuda_ring_attention_args valid = make_args(desc);
  const int64_t kv_needed = expected_kv_scratch_elements(desc);
  const int64_t accumulator_needed = expected_accumulator_bytes(desc);
  char expected[kMessageCapacity];

  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_run(plan, NULL, NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "run with no args");
  expect_message(__LINE__, RUN "args is NULL (got NULL, expected args)");

  baracuda_ring_attention_args args = valid;
  args.q.rank = 3;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_run(plan, &args, NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "run with a rank-3 q");
  expect_message(__LINE__, RUN "q rank mismatch (got 3, expected 4)");

  args = valid;
  args.kv_scratch_b.buffer_elements = kv_needed - 1;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_run(plan, &args, NULL, NULL),
                BARACUDA_STATUS_BUFFER_TOO_SMALL, "run with a small kv_scratch_b");
  snprintf(expected, sizeof expected,
           RUN
           "kv_scratch_b holds too few elements for K then V (got %lld, expected at least "
           "%lld = kv_scratch_elements)",
           (long long)(kv_needed - 1), (long long)kv_needed);
  expect_message(__LINE__, expected);
  expect_sizes(__LINE__, kv_needed, kv_needed - 1);

  args = valid;
  args.accumulator_scratch_bytes = (size_t)accumulator_needed - 1;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_run(plan, &args, NULL, NULL),
                BARACUDA_STATUS_WORKSPACE_TOO_SMALL, "run with a small accumulator scratch");
  expect_message_parts(__LINE__, RUN "accumulator_scratch too small (got ", "");
  expect_sizes(__LINE__, accumulator_needed, accumulator_needed - 1);

  args = valid;
  args.kv_scratch_b.data = args.kv_scratch_a.data;
  poison_last_error();
  expect_status(__LINE__, baracuda_ring_attention_run(plan, &args, NULL, NULL),
                BARACUDA_STATUS_INVALID_PROBLEM, "run with one K/V scratch buffer twice");
  expect_message_parts(__LINE__, RUN "kv_scratch_a and kv_scratch_b share memory (got ", "");

  /* A communicator without a loadable NCCL: run stops at loading NCCL, before any launch. */
  if (baracuda_nccl_load(NULL) != BARACUDA_STATUS_SUCCESS) {
    poison_last_error();
    expect_status(__LINE__, baracuda_ring_attention_run(plan, &valid, NOT_A_COMM, NULL),
                  BARACUDA_STATUS_LIBRARY_NOT_LOADED, "run with a communicator and no NCCL");
    expect_message_parts(__LINE__, RUN "cannot load NCCL (got ",
                         ", expected libnccl.so.2 in one of these places)");
  } else {
    printf("skipped: run with a communicator but no NCCL (an NCCL is loadable here: %s)\n",
           baracuda_nccl_library_path());
  }
}

/* Problems with no query rows: every view is empty, NULL data is fine, and run has nothing to
 * launch. */
static void test_empty_problems(void) {
  baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F16);
  desc.batch_size = 0;
  baracuda_ring_attention_plan plan = select_plan(&desc);
  if (plan != NULL) {
    const baracuda_ring_attention_args args = make_args(&desc);
    CHECK(args.q.data == NULL && args.kv_scratch_a.data == NULL && args.accumulator_scratch == NULL,
          "an empty problem's views have no data");
    EXPECT_ACCEPTED(plan, &args);
    if (!is_stand_in(plan)) {
      poison_last_error();
      expect_status(__LINE__, baracuda_ring_attention_run(plan, &args, NULL, NULL),
                    BARACUDA_STATUS_SUCCESS, "run of an empty problem");
      expect_message(__LINE__, "");
    }
    release_plan(plan);
  }

  /* No queries, but keys: the K/V scratch is still needed, the accumulators are not. */
  desc = make_descriptor(BARACUDA_ELEMENT_F32);
  desc.query_len = 0;
  plan = select_plan(&desc);
  if (plan != NULL) {
    const baracuda_ring_attention_args args = make_args(&desc);
    size_t bytes = 0;
    CHECK(is_stand_in(plan) || (baracuda_ring_attention_accumulator_scratch_bytes(plan, &bytes) ==
                                    BARACUDA_STATUS_SUCCESS &&
                                bytes == 0),
          "no query rows need no accumulator bytes (got %zu)", bytes);
    CHECK(args.accumulator_scratch == NULL && args.kv_scratch_a.data != NULL,
          "no query rows: no accumulators, K/V scratch present");
    EXPECT_ACCEPTED(plan, &args);
    release_plan(plan);
  }
}

/* The argument checks: through can_implement and check_args with a device, through check_args
 * alone without one; the plan's own queries and run only with a device. */
static void test_argument_checks(void) {
  if (g_device_present) test_plan_queries();
  const baracuda_ring_attention_descriptor desc = make_descriptor(BARACUDA_ELEMENT_F16);
  baracuda_ring_attention_plan plan = select_plan(&desc);
  if (plan != NULL) {
    test_args_tensors(plan, &desc);
    test_args_alibi(plan, &desc);
    test_args_kv_scratch(plan, &desc);
    test_args_accumulator_scratch(plan, &desc);
    test_args_memory(plan, &desc);
    if (!is_stand_in(plan)) test_run_checks(plan, &desc);
    release_plan(plan);
  }
  test_args_per_element();
  test_empty_problems();
  test_check_args_descriptor();
}

/* ------------------------------------------------------------------ main */

int main(void) {
  test_layout_and_schedule_strings();
  test_descriptor_init_defaults();

  detect_device();
  test_select_null_pointers();
  test_select_refuses_bad_descriptors();
  test_select_scratch_size_limit();
  test_select_num_heads_k();
  test_select_zigzag_lengths();
  test_select_grid_limit();
  test_select_check_order();
  test_select_accepts_valid_descriptors();
  test_select_head_dim_buckets();
  test_null_plan_functions();

  test_argument_checks();
  if (!g_device_present) {
    printf(
        "skipped: can_implement, run, the scratch sizes, SKU and precision guarantee (they "
        "need a plan, and a plan needs a CUDA device); the argument checks ran through "
        "check_args\n");
  }
  return test_summary();
}
