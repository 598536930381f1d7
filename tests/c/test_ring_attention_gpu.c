/*
 * GPU test of ring attention from C, on one rank (no communicator): the plan's run equals the
 * flash plan on the same inputs, and the seed's init + steps over K/V chunks + finalize equal the
 * flash plan on the whole K/V. Inputs are random and non-zero (a fixed-seed LCG); every output
 * and accumulator is poisoned with NaN before it is written. Exits 77 (skipped) when no CUDA
 * device is present.
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <baracuda/baracuda.h>

#include "test_check.h"
#include "test_gpu_support.h"

/* Every byte 0xFF is a NaN in f64, f32 and bf16. */
enum { kNanByte = 0xFF };

/* Ring and flash on the same inputs run the same step kernel: f32 and f64 agree to rounding. */
static const double kRingF32Tolerance = 1e-6;
static const double kF64Tolerance = 1e-12;
/* Chunked online softmax rescales the f32 accumulators once per chunk: a few more roundings. */
static const double kSeedF32Tolerance = 1e-5;
/* bf16 outputs from f32 accumulators: the two results may round to neighbouring bf16 values,
 * one unit in the last place apart, 2^-7 of the value at most. */
static const double kBf16OutputTolerance = 1.0 / 128.0;

/* ------------------------------------------------------------------ random data */

/* Knuth's MMIX LCG; the top 53 bits of the state make a double in [0, 1). */
static const uint64_t kLcgMultiplier = 6364136223846793005ull;
static const uint64_t kLcgIncrement = 1442695040888963407ull;
static const uint64_t kLcgSeed = 0x5EED0F12A7717Eull;
enum { kDoubleMantissaBits = 53, kStateBits = 64 };
static uint64_t g_lcg = kLcgSeed;

static double unit_uniform(void) {
  g_lcg = g_lcg * kLcgMultiplier + kLcgIncrement;
  return (double)(g_lcg >> (kStateBits - kDoubleMantissaBits)) /
         (double)(1ull << kDoubleMantissaBits);
}

/* Non-zero values: a random sign and a magnitude in [kSmallest, 1) x amplitude. */
static const double kSmallest = 0.125;
static const double kHalf = 0.5;
/* Q, K, V in (-1, 1); ALiBi slopes in (0, 0.5). */
static const double kInputAmplitude = 1.0;
static const double kSlopeAmplitude = 0.5;

static double nonzero_value(double amplitude) {
  const double magnitude = kSmallest + (1.0 - kSmallest) * unit_uniform();
  return (unit_uniform() < kHalf ? -magnitude : magnitude) * amplitude;
}

static double* random_values(int64_t count, double amplitude) {
  double* values = malloc(sizeof(double) * (size_t)(count > 0 ? count : 1));
  for (int64_t n = 0; n < count; ++n) values[n] = nonzero_value(amplitude);
  return values;
}

/* ------------------------------------------------------------------ elements on the host */

static baracuda_element compute_element_of(baracuda_element element) {
  return element == BARACUDA_ELEMENT_F64 ? BARACUDA_ELEMENT_F64 : BARACUDA_ELEMENT_F32;
}

static void* poisoned_buffer(int64_t count, baracuda_element element) {
  const size_t bytes = (size_t)count * element_bytes(element);
  void* device = NULL;
  CUDA_OK(cudaMalloc(&device, bytes > 0 ? bytes : 1));
  CUDA_OK(cudaMemset(device, kNanByte, bytes));
  return device;
}

static double* read_back(const void* device, int64_t count, baracuda_element element) {
  double* out = malloc(sizeof(double) * (size_t)(count > 0 ? count : 1));
  download(device, element, count, out);
  return out;
}

/* ------------------------------------------------------------------ layouts and views */

/* Row-major [B, heads, len, dim] (BHSD) or [B, len, heads, dim] (BSHD) strides. */
static void strides4(int bshd, int64_t heads, int64_t len, int64_t dim, int64_t* strides) {
  if (bshd) {
    strides[0] = len * heads * dim;
    strides[1] = dim;
    strides[2] = heads * dim;
  } else {
    strides[0] = heads * len * dim;
    strides[1] = len * dim;
    strides[2] = dim;
  }
  strides[3] = 1;
}

/* Values held logically as BHSD, stored in the layout of `bshd`. */
static double* to_layout(const double* bhsd, int bshd, int64_t batch, int64_t heads, int64_t len,
                         int64_t dim) {
  const int64_t count = batch * heads * len * dim;
  double* stored = malloc(sizeof(double) * (size_t)(count > 0 ? count : 1));
  int64_t strides[4];
  strides4(bshd, heads, len, dim, strides);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t s = 0; s < len; ++s)
        for (int64_t d = 0; d < dim; ++d)
          stored[b * strides[0] + h * strides[1] + s * strides[2] + d] =
              bhsd[((b * heads + h) * len + s) * dim + d];
  return stored;
}

/* Reads a stored tensor back into BHSD order. */
static void from_layout(const double* stored, int bshd, int64_t batch, int64_t heads, int64_t len,
                        int64_t dim, double* bhsd) {
  int64_t strides[4];
  strides4(bshd, heads, len, dim, strides);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t s = 0; s < len; ++s)
        for (int64_t d = 0; d < dim; ++d)
          bhsd[((b * heads + h) * len + s) * dim + d] =
              stored[b * strides[0] + h * strides[1] + s * strides[2] + d];
}

static baracuda_tensor view4(void* data, baracuda_element element, int bshd, int64_t batch,
                             int64_t heads, int64_t len, int64_t dim) {
  const int64_t shape[4] = {batch, heads, len, dim};
  int64_t strides[4];
  strides4(bshd, heads, len, dim, strides);
  return view(data, element, 4, shape, strides, batch * heads * len * dim);
}

static baracuda_tensor lse_view(void* data, baracuda_element element, int64_t batch, int64_t heads,
                                int64_t len) {
  const int64_t shape[3] = {batch, heads, len};
  const int64_t strides[3] = {heads * len, len, 1};
  return view(data, element, 3, shape, strides, batch * heads * len);
}

/* ------------------------------------------------------------------ comparison */

typedef struct Agreement {
  double worst;          /* max |got - expected| / max(1, |expected|) over finite pairs */
  int not_finite;        /* got is NaN or +-inf where expected is finite: unwritten or wrong */
  int infinity_mismatch; /* expected -inf (a row with no key) but got something else */
  int reference_nan;     /* the flash plan left a NaN: its output is no reference */
} Agreement;

static Agreement compare(const double* got, const double* expected, int64_t count) {
  Agreement agreement = {0.0, 0, 0, 0};
  for (int64_t n = 0; n < count; ++n) {
    if (isnan(expected[n])) {
      ++agreement.reference_nan;
      continue;
    }
    if (isinf(expected[n])) {
      if (got[n] != expected[n]) ++agreement.infinity_mismatch;
      continue;
    }
    if (!isfinite(got[n])) {
      ++agreement.not_finite;
      continue;
    }
    const double error = fabs(got[n] - expected[n]) / fmax(1.0, fabs(expected[n]));
    if (error > agreement.worst) agreement.worst = error;
  }
  return agreement;
}

static void check_agreement(const char* name, const char* what, const double* got,
                            const double* expected, int64_t count, double tolerance) {
  const Agreement agreement = compare(got, expected, count);
  CHECK(agreement.reference_nan == 0, "%s: the flash plan left %d %s elements NaN", name,
        agreement.reference_nan, what);
  CHECK(agreement.not_finite == 0, "%s: %d %s elements not finite (unwritten or NaN)", name,
        agreement.not_finite, what);
  CHECK(agreement.infinity_mismatch == 0, "%s: %d %s elements disagree on -inf", name,
        agreement.infinity_mismatch, what);
  CHECK(agreement.worst <= tolerance, "%s: %s differs by %.3e > %.1e", name, what, agreement.worst,
        tolerance);
  printf("%-44s %-3s max error %.2e (tolerance %.0e)\n", name, what, agreement.worst, tolerance);
}

/* ------------------------------------------------------------------ ring plan == flash plan */

enum { kNoAlibi = 0, kAlibiPerHead = 1, kAlibiPerBatch = 2 }; /* slopes [1, H] or [B, H] */

typedef struct RingCase {
  const char* name;
  baracuda_element element;
  int batch, heads, heads_k, query_len, key_len, head_dim;
  int is_causal, window_left, window_right;
  double softcap;
  int alibi;
  baracuda_ring_layout layout;
  baracuda_ring_schedule schedule;
  int stage_kv; /* 1: pass k and v to run; 0: the caller stages them into kv_scratch_a */
  int with_lse;
  int bshd; /* Q, K, V, Y stored [B, S, H, D] and passed as strided views */
} RingCase;

static double ring_tolerance(baracuda_element element) {
  switch (element) {
    case BARACUDA_ELEMENT_F64: return kF64Tolerance;
    case BARACUDA_ELEMENT_F32: return kRingF32Tolerance;
    default: return kBf16OutputTolerance;
  }
}

/* Selects and runs the flash plan on args, then waits for it; whether both succeeded. */
static int run_flash(const baracuda_flash_sdpa_descriptor* desc, baracuda_flash_sdpa_args* args,
                     const char* name) {
  baracuda_flash_sdpa_plan plan = NULL;
  baracuda_status status = baracuda_flash_sdpa_plan_select(desc, NULL, &plan);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: flash select: %s", name,
        baracuda_last_error_message());
  if (status != BARACUDA_STATUS_SUCCESS) return 0;
  status = baracuda_flash_sdpa_run(plan, args, NULL, 0, NULL);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: flash run: %s", name,
        baracuda_last_error_message());
  CUDA_OK(cudaDeviceSynchronize());
  baracuda_flash_sdpa_plan_destroy(plan);
  return status == BARACUDA_STATUS_SUCCESS;
}

static void ring_case(const RingCase* c) {
  const baracuda_element element = c->element;
  const baracuda_element compute = compute_element_of(element);
  const int64_t q_count = (int64_t)c->batch * c->heads * c->query_len * c->head_dim;
  const int64_t kv_count = (int64_t)c->batch * c->heads_k * c->key_len * c->head_dim;
  const int64_t rows = (int64_t)c->batch * c->heads * c->query_len;

  double* q = random_values(q_count, kInputAmplitude);
  double* k = random_values(kv_count, kInputAmplitude);
  double* v = random_values(kv_count, kInputAmplitude);
  double* q_stored = to_layout(q, c->bshd, c->batch, c->heads, c->query_len, c->head_dim);
  double* k_stored = to_layout(k, c->bshd, c->batch, c->heads_k, c->key_len, c->head_dim);
  double* v_stored = to_layout(v, c->bshd, c->batch, c->heads_k, c->key_len, c->head_dim);
  void* dq = upload(q_stored, q_count, element);
  void* dk = upload(k_stored, kv_count, element);
  void* dv = upload(v_stored, kv_count, element);
  void* dy_flash = poisoned_buffer(q_count, element);
  void* dlse_flash = poisoned_buffer(rows, compute);
  void* dy_ring = poisoned_buffer(q_count, element);
  void* dy_again = poisoned_buffer(q_count, element);
  void* dlse_ring = poisoned_buffer(rows, compute);
  void* dslopes = NULL;
  baracuda_tensor slopes;
  memset(&slopes, 0, sizeof slopes);
  if (c->alibi != kNoAlibi) {
    const int64_t slope_rows = c->alibi == kAlibiPerBatch ? c->batch : 1;
    double* values = random_values(slope_rows * c->heads, kSlopeAmplitude);
    for (int64_t n = 0; n < slope_rows * c->heads; ++n) values[n] = fabs(values[n]);
    dslopes = upload(values, slope_rows * c->heads, BARACUDA_ELEMENT_F32);
    const int64_t shape[2] = {slope_rows, c->heads};
    const int64_t strides[2] = {c->heads, 1};
    slopes = view(dslopes, BARACUDA_ELEMENT_F32, 2, shape, strides, slope_rows * c->heads);
    free(values);
  }

  /* The flash plan on the same device inputs. */
  baracuda_flash_sdpa_descriptor flash;
  baracuda_flash_sdpa_descriptor_init(&flash, c->batch, c->heads, c->query_len, c->key_len,
                                      c->head_dim, c->head_dim, element);
  flash.is_causal = c->is_causal;
  flash.window_size_left = c->window_left;
  flash.window_size_right = c->window_right;
  flash.softcap = c->softcap;
  baracuda_flash_sdpa_args flash_args;
  memset(&flash_args, 0, sizeof flash_args);
  flash_args.q = view4(dq, element, c->bshd, c->batch, c->heads, c->query_len, c->head_dim);
  flash_args.k = view4(dk, element, c->bshd, c->batch, c->heads_k, c->key_len, c->head_dim);
  flash_args.v = view4(dv, element, c->bshd, c->batch, c->heads_k, c->key_len, c->head_dim);
  flash_args.y = view4(dy_flash, element, c->bshd, c->batch, c->heads, c->query_len, c->head_dim);
  flash_args.lse = lse_view(dlse_flash, compute, c->batch, c->heads, c->query_len);
  flash_args.alibi_slopes = slopes;
  const int flash_ok = run_flash(&flash, &flash_args, c->name);

  /* The ring plan, one rank. */
  baracuda_ring_attention_descriptor desc;
  baracuda_ring_attention_descriptor_init(&desc, c->batch, c->heads, c->query_len, c->key_len,
                                          c->head_dim, element);
  desc.num_heads_k = c->heads_k;
  desc.is_causal = c->is_causal;
  desc.window_size_left = c->window_left;
  desc.window_size_right = c->window_right;
  desc.softcap = c->softcap;
  desc.layout = c->layout;
  desc.schedule = c->schedule;
  baracuda_ring_attention_plan plan = NULL;
  baracuda_status status = baracuda_ring_attention_plan_select(&desc, NULL, &plan);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: ring select: %s", c->name,
        baracuda_last_error_message());
  int64_t kv_elements = 0;
  size_t accumulator_bytes = 0;
  if (status == BARACUDA_STATUS_SUCCESS) {
    CHECK(
        baracuda_ring_attention_kv_scratch_elements(plan, &kv_elements) == BARACUDA_STATUS_SUCCESS,
        "%s: kv_scratch_elements: %s", c->name, baracuda_last_error_message());
    CHECK(baracuda_ring_attention_accumulator_scratch_bytes(plan, &accumulator_bytes) ==
              BARACUDA_STATUS_SUCCESS,
          "%s: accumulator_scratch_bytes: %s", c->name, baracuda_last_error_message());
  }
  void* scratch_a = NULL;
  void* scratch_b = poisoned_buffer(kv_elements, element);
  void* accumulators = NULL;
  CUDA_OK(cudaMalloc(&accumulators, accumulator_bytes > 0 ? accumulator_bytes : 1));
  CUDA_OK(cudaMemset(accumulators, kNanByte, accumulator_bytes));
  if (c->stage_kv) {
    scratch_a = poisoned_buffer(kv_elements, element);
  } else {
    /* What the caller stages: K then V, contiguous [B, Hk, Sk, D] each. */
    double* staged = malloc(sizeof(double) * (size_t)(2 * kv_count > 0 ? 2 * kv_count : 1));
    memcpy(staged, k, sizeof(double) * (size_t)kv_count);
    memcpy(staged + kv_count, v, sizeof(double) * (size_t)kv_count);
    scratch_a = upload(staged, 2 * kv_count, element);
    free(staged);
  }

  baracuda_ring_attention_args args;
  memset(&args, 0, sizeof args);
  args.q = flash_args.q;
  if (c->stage_kv) {
    args.k = flash_args.k;
    args.v = flash_args.v;
  }
  args.y = view4(dy_ring, element, c->bshd, c->batch, c->heads, c->query_len, c->head_dim);
  if (c->with_lse) args.lse = lse_view(dlse_ring, compute, c->batch, c->heads, c->query_len);
  args.alibi_slopes = slopes;
  const int64_t scratch_shape[1] = {kv_elements};
  const int64_t scratch_strides[1] = {1};
  args.kv_scratch_a = view(scratch_a, element, 1, scratch_shape, scratch_strides, kv_elements);
  args.kv_scratch_b = view(scratch_b, element, 1, scratch_shape, scratch_strides, kv_elements);
  args.accumulator_scratch = accumulators;
  args.accumulator_scratch_bytes = accumulator_bytes;

  if (plan != NULL && flash_ok) {
    CHECK(baracuda_ring_attention_can_implement(plan, &args) == BARACUDA_STATUS_SUCCESS,
          "%s: can_implement: %s", c->name, baracuda_last_error_message());
    status = baracuda_ring_attention_run(plan, &args, NULL, NULL);
    CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: ring run: %s", c->name,
          baracuda_last_error_message());
    CHECK(strcmp(baracuda_last_error_message(), "") == 0, "%s: message after run: %s", c->name,
          baracuda_last_error_message());
    CUDA_OK(cudaDeviceSynchronize());

    double* y_flash_stored = read_back(dy_flash, q_count, element);
    double* y_ring_stored = read_back(dy_ring, q_count, element);
    double* y_flash = malloc(sizeof(double) * (size_t)q_count);
    double* y_ring = malloc(sizeof(double) * (size_t)q_count);
    from_layout(y_flash_stored, c->bshd, c->batch, c->heads, c->query_len, c->head_dim, y_flash);
    from_layout(y_ring_stored, c->bshd, c->batch, c->heads, c->query_len, c->head_dim, y_ring);
    const double tolerance = ring_tolerance(element);
    check_agreement(c->name, "y", y_ring, y_flash, q_count, tolerance);
    if (c->with_lse) {
      double* lse_flash = read_back(dlse_flash, rows, compute);
      double* lse_ring = read_back(dlse_ring, rows, compute);
      check_agreement(c->name, "lse", lse_ring, lse_flash, rows,
                      element == BARACUDA_ELEMENT_F64 ? kF64Tolerance : kRingF32Tolerance);
      free(lse_flash);
      free(lse_ring);
    }

    /* Deterministic: the same inputs give the same bytes. The caller's staged chunk was
     * overwritten only when run staged it itself. */
    if (c->stage_kv) {
      args.y.data = dy_again;
      CHECK(baracuda_ring_attention_run(plan, &args, NULL, NULL) == BARACUDA_STATUS_SUCCESS,
            "%s: second ring run: %s", c->name, baracuda_last_error_message());
      CUDA_OK(cudaDeviceSynchronize());
      const size_t y_bytes = (size_t)q_count * element_bytes(element);
      unsigned char* first = malloc(y_bytes > 0 ? y_bytes : 1);
      unsigned char* second = malloc(y_bytes > 0 ? y_bytes : 1);
      CUDA_OK(cudaMemcpy(first, dy_ring, y_bytes, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(second, dy_again, y_bytes, cudaMemcpyDeviceToHost));
      CHECK(memcmp(first, second, y_bytes) == 0, "%s: a second run gives other bytes", c->name);
      free(first);
      free(second);
    }
    free(y_flash_stored);
    free(y_ring_stored);
    free(y_flash);
    free(y_ring);
  }
  baracuda_ring_attention_plan_destroy(plan);
  free(q);
  free(k);
  free(v);
  free(q_stored);
  free(k_stored);
  free(v_stored);
  void* buffers[] = {dq,       dk,        dv,      dy_flash,  dlse_flash, dy_ring,
                     dy_again, dlse_ring, dslopes, scratch_a, scratch_b,  accumulators};
  for (size_t n = 0; n < sizeof buffers / sizeof buffers[0]; ++n) cudaFree(buffers[n]);
}

/* ------------------------------------------------------------------ seed init/step/finalize */

typedef struct SeedCase {
  const char* name;
  baracuda_element element; /* f32, bf16 or f64 */
  int batch, heads, query_len, chunk_len, chunks, head_dim;
  int is_causal;
  int bottom_right; /* queries at the end of the keys: q_global_base = chunks x chunk_len - Sq */
} SeedCase;

static double seed_tolerance(baracuda_element element) {
  switch (element) {
    case BARACUDA_ELEMENT_F64: return kF64Tolerance;
    case BARACUDA_ELEMENT_F32: return kSeedF32Tolerance;
    default: return kBf16OutputTolerance;
  }
}

static baracuda_status seed_init(baracuda_element element, void* o, void* m, void* l, int64_t o_len,
                                 int64_t ml_len) {
  if (element == BARACUDA_ELEMENT_F64) {
    return baracuda_kernels_ring_attention_f64_init_run(o, m, l, o_len, ml_len, NULL);
  }
  return baracuda_kernels_ring_attention_init_run(o, m, l, o_len, ml_len, NULL);
}

static baracuda_status seed_step(baracuda_element element, const SeedCase* c, int q_base,
                                 int k_base, float scale, const void* q, const void* k,
                                 const void* v, void* o, void* m, void* l) {
  switch (element) {
    case BARACUDA_ELEMENT_F64:
      return baracuda_kernels_ring_attention_f64_step_run(
          c->batch, c->heads, c->query_len, c->chunk_len, c->head_dim, q_base, k_base, scale,
          c->is_causal, q, k, v, o, m, l, NULL);
    case BARACUDA_ELEMENT_BF16:
      return baracuda_kernels_ring_attention_bf16_step_run(
          c->batch, c->heads, c->query_len, c->chunk_len, c->head_dim, q_base, k_base, scale,
          c->is_causal, q, k, v, o, m, l, NULL);
    default:
      return baracuda_kernels_ring_attention_f32_step_run(
          c->batch, c->heads, c->query_len, c->chunk_len, c->head_dim, q_base, k_base, scale,
          c->is_causal, q, k, v, o, m, l, NULL);
  }
}

static baracuda_status seed_finalize(baracuda_element element, const SeedCase* c, const void* o,
                                     const void* m, const void* l, void* y, void* lse) {
  switch (element) {
    case BARACUDA_ELEMENT_F64:
      return baracuda_kernels_ring_attention_f64_finalize_run(c->batch, c->heads, c->query_len,
                                                              c->head_dim, o, m, l, y, lse, NULL);
    case BARACUDA_ELEMENT_BF16:
      return baracuda_kernels_ring_attention_bf16_finalize_run(c->batch, c->heads, c->query_len,
                                                               c->head_dim, o, m, l, y, lse, NULL);
    default:
      return baracuda_kernels_ring_attention_f32_finalize_run(c->batch, c->heads, c->query_len,
                                                              c->head_dim, o, m, l, y, lse, NULL);
  }
}

static void seed_case(const SeedCase* c) {
  const baracuda_element element = c->element;
  const baracuda_element compute = compute_element_of(element);
  const int key_len = c->chunks * c->chunk_len;
  const int64_t bh = (int64_t)c->batch * c->heads;
  const int64_t q_count = bh * c->query_len * c->head_dim;
  const int64_t kv_count = bh * key_len * c->head_dim;
  const int64_t chunk_count = bh * c->chunk_len * c->head_dim;
  const int64_t rows = bh * c->query_len;
  const float scale = (float)(1.0 / sqrt((double)c->head_dim));
  const int q_global_base = c->bottom_right ? key_len - c->query_len : 0;

  double* q = random_values(q_count, kInputAmplitude);
  double* k = random_values(kv_count, kInputAmplitude);
  double* v = random_values(kv_count, kInputAmplitude);
  void* dq = upload(q, q_count, element);
  void* dk = upload(k, kv_count, element);
  void* dv = upload(v, kv_count, element);

  /* The flash plan on the whole K/V, with the seed's float scale. */
  void* dy_flash = poisoned_buffer(q_count, element);
  void* dlse_flash = poisoned_buffer(rows, compute);
  baracuda_flash_sdpa_descriptor flash;
  baracuda_flash_sdpa_descriptor_init(&flash, c->batch, c->heads, c->query_len, key_len,
                                      c->head_dim, c->head_dim, element);
  flash.scale = scale;
  flash.is_causal = c->is_causal;
  flash.alignment = c->bottom_right ? BARACUDA_ALIGN_BOTTOM_RIGHT : BARACUDA_ALIGN_TOP_LEFT;
  baracuda_flash_sdpa_args flash_args;
  memset(&flash_args, 0, sizeof flash_args);
  flash_args.q = view4(dq, element, 0, c->batch, c->heads, c->query_len, c->head_dim);
  flash_args.k = view4(dk, element, 0, c->batch, c->heads, key_len, c->head_dim);
  flash_args.v = view4(dv, element, 0, c->batch, c->heads, key_len, c->head_dim);
  flash_args.y = view4(dy_flash, element, 0, c->batch, c->heads, c->query_len, c->head_dim);
  flash_args.lse = lse_view(dlse_flash, compute, c->batch, c->heads, c->query_len);
  const int flash_ok = run_flash(&flash, &flash_args, c->name);

  /* Each chunk: keys [chunk x chunk_len, (chunk + 1) x chunk_len) of every (b, h), contiguous. */
  void** dk_chunks = malloc(sizeof(void*) * (size_t)c->chunks);
  void** dv_chunks = malloc(sizeof(void*) * (size_t)c->chunks);
  double* k_chunk = malloc(sizeof(double) * (size_t)chunk_count);
  double* v_chunk = malloc(sizeof(double) * (size_t)chunk_count);
  const int64_t row_values = (int64_t)c->chunk_len * c->head_dim;
  for (int chunk = 0; chunk < c->chunks; ++chunk) {
    for (int64_t head = 0; head < bh; ++head) {
      const int64_t from = (head * key_len + (int64_t)chunk * c->chunk_len) * c->head_dim;
      memcpy(k_chunk + head * row_values, k + from, sizeof(double) * (size_t)row_values);
      memcpy(v_chunk + head * row_values, v + from, sizeof(double) * (size_t)row_values);
    }
    dk_chunks[chunk] = upload(k_chunk, chunk_count, element);
    dv_chunks[chunk] = upload(v_chunk, chunk_count, element);
  }

  void* o = poisoned_buffer(q_count, compute);
  void* m = poisoned_buffer(rows, compute);
  void* l = poisoned_buffer(rows, compute);
  void* dy = poisoned_buffer(q_count, element);
  void* dlse = poisoned_buffer(rows, compute);
  baracuda_status status = seed_init(element, o, m, l, q_count, rows);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: init: %s", c->name, baracuda_last_error_message());
  for (int chunk = 0; chunk < c->chunks && status == BARACUDA_STATUS_SUCCESS; ++chunk) {
    status = seed_step(element, c, q_global_base, chunk * c->chunk_len, scale, dq, dk_chunks[chunk],
                       dv_chunks[chunk], o, m, l);
    CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: step %d: %s", c->name, chunk,
          baracuda_last_error_message());
  }
  if (status == BARACUDA_STATUS_SUCCESS) {
    status = seed_finalize(element, c, o, m, l, dy, dlse);
    CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: finalize: %s", c->name,
          baracuda_last_error_message());
  }
  CUDA_OK(cudaDeviceSynchronize());

  if (status == BARACUDA_STATUS_SUCCESS && flash_ok) {
    double* y_flash = read_back(dy_flash, q_count, element);
    double* y_seed = read_back(dy, q_count, element);
    double* lse_flash = read_back(dlse_flash, rows, compute);
    double* lse_seed = read_back(dlse, rows, compute);
    check_agreement(c->name, "y", y_seed, y_flash, q_count, seed_tolerance(element));
    check_agreement(c->name, "lse", lse_seed, lse_flash, rows,
                    element == BARACUDA_ELEMENT_F64 ? kF64Tolerance : kSeedF32Tolerance);
    free(y_flash);
    free(y_seed);
    free(lse_flash);
    free(lse_seed);
  }

  for (int chunk = 0; chunk < c->chunks; ++chunk) {
    cudaFree(dk_chunks[chunk]);
    cudaFree(dv_chunks[chunk]);
  }
  void* buffers[] = {dq, dk, dv, dy_flash, dlse_flash, o, m, l, dy, dlse};
  for (size_t n = 0; n < sizeof buffers / sizeof buffers[0]; ++n) cudaFree(buffers[n]);
  free(dk_chunks);
  free(dv_chunks);
  free(k_chunk);
  free(v_chunk);
  free(q);
  free(k);
  free(v);
}

/* ------------------------------------------------------------------ main */

int main(void) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    printf("skipped: no CUDA device\n");
    return kSkipExitCode;
  }
  const int U = BARACUDA_WINDOW_UNBOUNDED;
  const baracuda_element F32 = BARACUDA_ELEMENT_F32, F64 = BARACUDA_ELEMENT_F64,
                         BF16 = BARACUDA_ELEMENT_BF16;
  const baracuda_ring_layout CONTIGUOUS = BARACUDA_RING_LAYOUT_CONTIGUOUS,
                             ZIGZAG = BARACUDA_RING_LAYOUT_ZIGZAG;
  const baracuda_ring_schedule OVERLAPPED = BARACUDA_RING_SCHEDULE_OVERLAPPED,
                               SERIAL = BARACUDA_RING_SCHEDULE_SERIAL;
  /* name, element, B, H, Hk, Sq, Sk, D, causal, left, right, softcap, alibi, layout, schedule,
   * stage_kv, with_lse, bshd */
  const RingCase ring_cases[] = {
      {"ring f32 tiny", F32, 1, 1, 1, 1, 1, 8, 0, U, U, 0.0, kNoAlibi, CONTIGUOUS, OVERLAPPED, 1, 1,
       0},
      {"ring f32 mha", F32, 2, 4, 4, 37, 53, 64, 0, U, U, 0.0, kNoAlibi, CONTIGUOUS, OVERLAPPED, 1,
       1, 0},
      {"ring f32 gqa causal", F32, 2, 8, 2, 40, 40, 64, 1, U, U, 0.0, kNoAlibi, CONTIGUOUS,
       OVERLAPPED, 1, 1, 0},
      {"ring f32 causal Sq<Sk", F32, 1, 2, 2, 17, 40, 32, 1, U, U, 0.0, kNoAlibi, CONTIGUOUS,
       OVERLAPPED, 1, 1, 0},
      {"ring f32 window softcap alibi[1,H]", F32, 2, 4, 4, 33, 45, 64, 0, 7, 3, 5.0, kAlibiPerHead,
       CONTIGUOUS, OVERLAPPED, 1, 1, 0},
      {"ring f32 causal window alibi[B,H] serial", F32, 2, 4, 2, 50, 61, 64, 1, 20, U, 0.0,
       kAlibiPerBatch, CONTIGUOUS, SERIAL, 1, 1, 0},
      {"ring f32 zigzag causal", F32, 1, 4, 4, 32, 32, 64, 1, U, U, 0.0, kNoAlibi, ZIGZAG,
       OVERLAPPED, 1, 1, 0},
      {"ring f32 caller-staged kv, no lse, bshd", F32, 2, 4, 2, 29, 31, 64, 1, U, U, 0.0, kNoAlibi,
       CONTIGUOUS, OVERLAPPED, 0, 0, 1},
      {"ring f32 mqa d8 bshd", F32, 1, 4, 1, 19, 70, 8, 0, U, U, 0.0, kNoAlibi, CONTIGUOUS, SERIAL,
       1, 1, 1},
      {"ring f64 gqa causal", F64, 1, 4, 2, 37, 53, 64, 1, U, U, 0.0, kNoAlibi, CONTIGUOUS,
       OVERLAPPED, 1, 1, 0},
      {"ring f64 window softcap alibi zigzag", F64, 2, 4, 4, 24, 40, 32, 0, 9, 4, 20.0,
       kAlibiPerHead, ZIGZAG, SERIAL, 1, 1, 0},
      {"ring bf16 gqa causal", BF16, 1, 8, 2, 64, 64, 64, 1, U, U, 0.0, kNoAlibi, CONTIGUOUS,
       OVERLAPPED, 1, 1, 0},
  };
  for (size_t n = 0; n < sizeof ring_cases / sizeof ring_cases[0]; ++n) ring_case(&ring_cases[n]);

  /* 50 queries, chunks of 21 keys: with 8 chunks under top-left causal, chunks 3 to 7 are
   * invisible to every query and must leave the accumulators as they are. */
  enum { kSeedBatch = 2, kSeedHeads = 3, kSeedQueries = 50, kSeedChunkLen = 21, kSeedDim = 64 };
  static const int kChunkCounts[] = {1, 3, 8};
  static const baracuda_element kSeedElements[] = {BARACUDA_ELEMENT_F32, BARACUDA_ELEMENT_BF16};
  enum { kNameCapacity = 64 };
  char name[kNameCapacity];
  for (size_t e = 0; e < sizeof kSeedElements / sizeof kSeedElements[0]; ++e) {
    for (size_t n = 0; n < sizeof kChunkCounts / sizeof kChunkCounts[0]; ++n) {
      for (int causal = 0; causal <= 1; ++causal) {
        snprintf(name, sizeof name, "seed %s %d chunk%s%s",
                 baracuda_element_string(kSeedElements[e]), kChunkCounts[n],
                 kChunkCounts[n] > 1 ? "s" : "", causal ? " causal" : "");
        const SeedCase c = {name,          kSeedElements[e], kSeedBatch, kSeedHeads, kSeedQueries,
                            kSeedChunkLen, kChunkCounts[n],  kSeedDim,   causal,     0};
        seed_case(&c);
      }
    }
  }
  const SeedCase extra_seed_cases[] = {
      {"seed f32 3 chunks causal bottom-right", F32, kSeedBatch, kSeedHeads, kSeedQueries,
       kSeedChunkLen, 3, kSeedDim, 1, 1},
      {"seed f64 3 chunks causal", F64, 1, kSeedHeads, kSeedQueries, kSeedChunkLen, 3, kSeedDim, 1,
       0},
      {"seed f64 8 chunks", F64, 1, kSeedHeads, kSeedQueries, kSeedChunkLen, 8, kSeedDim, 0, 0},
  };
  for (size_t n = 0; n < sizeof extra_seed_cases / sizeof extra_seed_cases[0]; ++n) {
    seed_case(&extra_seed_cases[n]);
  }
  return test_summary();
}
