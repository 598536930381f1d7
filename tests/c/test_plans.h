/*
 * What the argument checks of the flash and ring C tests share: the fake device buffers their
 * tensors point at, and the plans, with the descriptor each was selected for. Without a
 * device select cannot make a plan, so the tests register a stand-in instead: a distinct
 * handle, never passed to the library, whose argument checks run through the op's
 * *_check_args on its descriptor (they need no device). With a device the tests register the
 * selected plan and run every check through both can_implement and check_args.
 */
#ifndef BARACUDA_TEST_PLANS_H
#define BARACUDA_TEST_PLANS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <baracuda/baracuda.h>

/* Addresses that stand for device buffers, 16-byte aligned and far apart. can_implement and
 * check_args never dereference them, and no run of the tests reaches a launch with them. */
static const uintptr_t kFakeDeviceAddress = 0x7f0000000000u;
static const uintptr_t kFakeBufferSpacing = 0x10000000u;

static inline void* fake_buffer(int index) {
  return (void*)(kFakeDeviceAddress + (uintptr_t)index * kFakeBufferSpacing);
}

static inline int64_t element_count(int32_t rank, const int64_t* shape) {
  int64_t count = 1;
  for (int axis = 0; axis < rank; ++axis) count *= shape[axis];
  return count;
}

/* A row-major view of exactly its elements in fake buffer `buffer_index`; NULL data when it has
 * none. An empty axis counts as extent 1 in the strides, as PyTorch lays empty tensors out. */
static inline baracuda_tensor contiguous_tensor(int buffer_index, baracuda_element element,
                                                int32_t rank, const int64_t* shape) {
  baracuda_tensor tensor;
  memset(&tensor, 0, sizeof tensor);
  tensor.element = element;
  tensor.rank = rank;
  int64_t stride = 1;
  for (int axis = rank - 1; axis >= 0; --axis) {
    tensor.shape[axis] = shape[axis];
    tensor.strides[axis] = stride;
    stride *= shape[axis] > 0 ? shape[axis] : 1;
  }
  tensor.buffer_elements = element_count(rank, shape);
  tensor.data = tensor.buffer_elements > 0 ? fake_buffer(buffer_index) : NULL;
  return tensor;
}

enum { kMaxTestPlans = 8, kMaxDescriptorBytes = 128 };

typedef struct {
  void* plan; /* NULL: a free slot */
  unsigned char desc[kMaxDescriptorBytes];
  int stand_in;
} TestPlan;

static TestPlan g_test_plans[kMaxTestPlans];
static max_align_t g_stand_ins[kMaxTestPlans];

static inline TestPlan* test_plan_of(const void* plan) {
  for (int n = 0; n < kMaxTestPlans; ++n) {
    if (plan != NULL && g_test_plans[n].plan == plan) return &g_test_plans[n];
  }
  return NULL;
}

/* The descriptor a plan was registered with; NULL for an unknown plan. */
static inline const void* test_plan_descriptor(const void* plan) {
  const TestPlan* entry = test_plan_of(plan);
  return entry != NULL ? entry->desc : NULL;
}

static inline int test_plan_is_stand_in(const void* plan) {
  const TestPlan* entry = test_plan_of(plan);
  return entry != NULL && entry->stand_in;
}

/* Registers `plan` for desc, or a stand-in when plan is NULL; returns the handle, or NULL when
 * every slot is taken or the descriptor does not fit. */
static inline void* test_plan_register(void* plan, const void* desc, size_t desc_bytes) {
  if (desc_bytes > kMaxDescriptorBytes) return NULL;
  for (int n = 0; n < kMaxTestPlans; ++n) {
    TestPlan* entry = &g_test_plans[n];
    if (entry->plan != NULL) continue;
    entry->stand_in = plan == NULL;
    entry->plan = plan != NULL ? plan : (void*)&g_stand_ins[n];
    memcpy(entry->desc, desc, desc_bytes);
    return entry->plan;
  }
  return NULL;
}

/* Forgets a plan; returns whether it is a real plan, which the caller destroys. */
static inline int test_plan_forget(const void* plan) {
  TestPlan* entry = test_plan_of(plan);
  if (entry == NULL) return 0;
  entry->plan = NULL;
  return !entry->stand_in;
}

#endif /* BARACUDA_TEST_PLANS_H */
