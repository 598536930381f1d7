/*
 * GPU test of the flash-attention plan from C: random problems with every score modifier,
 * run through baracuda_flash_sdpa_run and the seed entry points, compared with a float64
 * reference computed here. Exits 77 (skipped) when no CUDA device is present.
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

/* ------------------------------------------------------------------ random data */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static double uniform(void) { /* in [-1, 1) */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (double)(g_rng >> 11) / (double)(1ull << 52) - 1.0;
}

/* ------------------------------------------------------------------ the problem */

typedef struct Problem {
  const char* name;
  baracuda_element element;
  int batch, heads, heads_k, query_len, key_len, d_k, d_v;
  int is_causal, window_left, window_right, bottom_right;
  double softcap;
  int alibi; /* slopes [1, H] */
  int mask;  /* 0 none, 1 full [B, H, Sq, Sk], 2 key padding [B, 1, 1, Sk] */
  int bshd;  /* Q, K, V, Y stored as [B, S, H, D] and passed as strided views */
} Problem;

/* Host copies in float64, device buffers in the problem's element. */
typedef struct Tensors {
  double *q, *k, *v, *mask, *slopes;
  void *dq, *dk, *dv, *dy, *dlse, *dmask, *dslopes;
} Tensors;

/* Index of (b, h, s, d) in a tensor stored BHSD or BSHD. */
static int64_t offset4(const Problem* p, int heads, int len, int dim, int b, int h, int s, int d) {
  if (p->bshd) return (((int64_t)b * len + s) * heads + h) * dim + d;
  return (((int64_t)b * heads + h) * len + s) * dim + d;
}

static void strides4(const Problem* p, int heads, int len, int dim, int64_t* strides) {
  if (p->bshd) {
    strides[0] = (int64_t)len * heads * dim;
    strides[1] = dim;
    strides[2] = (int64_t)heads * dim;
  } else {
    strides[0] = (int64_t)heads * len * dim;
    strides[1] = (int64_t)len * dim;
    strides[2] = dim;
  }
  strides[3] = 1;
}

static double* random_values(int64_t count, double amplitude) {
  double* values = malloc(sizeof(double) * (size_t)(count > 0 ? count : 1));
  for (int64_t n = 0; n < count; ++n) values[n] = amplitude * uniform();
  return values;
}

/* ------------------------------------------------------------------ reference */

static int visible(const Problem* p, int64_t i, int64_t j) {
  int64_t offset = p->bottom_right ? (int64_t)p->key_len - p->query_len : 0;
  int64_t diagonal = i + offset;
  int64_t right = p->window_right;
  if (p->is_causal && (right == BARACUDA_WINDOW_UNBOUNDED || right > 0)) right = 0;
  if (p->window_left != BARACUDA_WINDOW_UNBOUNDED && j < diagonal - p->window_left) return 0;
  if (right != BARACUDA_WINDOW_UNBOUNDED && j > diagonal + right) return 0;
  return 1;
}

static void reference_row(const Problem* p, const Tensors* t, double scale, int b, int h, int i,
                          double* y_row, double* lse) {
  int group = p->heads / p->heads_k;
  int hk = h / group;
  int64_t offset = p->bottom_right ? (int64_t)p->key_len - p->query_len : 0;
  double* scores = malloc(sizeof(double) * (size_t)(p->key_len > 0 ? p->key_len : 1));
  double max = -INFINITY;
  for (int j = 0; j < p->key_len; ++j) {
    double s = -INFINITY;
    if (visible(p, i, j)) {
      double dot = 0.0;
      for (int d = 0; d < p->d_k; ++d) {
        dot += t->q[offset4(p, p->heads, p->query_len, p->d_k, b, h, i, d)] *
               t->k[offset4(p, p->heads_k, p->key_len, p->d_k, b, hk, j, d)];
      }
      s = scale * dot;
      if (p->softcap > 0) s = p->softcap * tanh(s / p->softcap);
      if (p->alibi) s -= t->slopes[h] * fabs((double)(i - j + offset));
      if (p->mask == 1)
        s += t->mask[(((int64_t)b * p->heads + h) * p->query_len + i) * p->key_len + j];
      if (p->mask == 2) s += t->mask[(int64_t)b * p->key_len + j];
    }
    scores[j] = s;
    if (s > max) max = s;
  }
  for (int d = 0; d < p->d_v; ++d) y_row[d] = 0.0;
  if (max == -INFINITY) {
    *lse = -INFINITY;
    free(scores);
    return;
  }
  double sum = 0.0;
  for (int j = 0; j < p->key_len; ++j) {
    double weight = exp(scores[j] - max);
    sum += weight;
    for (int d = 0; d < p->d_v; ++d) {
      y_row[d] += weight * t->v[offset4(p, p->heads_k, p->key_len, p->d_v, b, hk, j, d)];
    }
  }
  for (int d = 0; d < p->d_v; ++d) y_row[d] /= sum;
  *lse = max + log(sum);
  free(scores);
}

/* ------------------------------------------------------------------ one case */

static double tolerance(baracuda_element element) {
  switch (element) {
    case BARACUDA_ELEMENT_F64: return 1e-12;
    case BARACUDA_ELEMENT_F32: return 1e-5;
    default: return 2e-2; /* bf16 output rounding: 2^-8 relative, plus accumulation */
  }
}

static void run_case(const Problem* p) {
  const baracuda_element lse_element =
      p->element == BARACUDA_ELEMENT_F64 ? BARACUDA_ELEMENT_F64 : BARACUDA_ELEMENT_F32;
  const int64_t q_count = (int64_t)p->batch * p->heads * p->query_len * p->d_k;
  const int64_t k_count = (int64_t)p->batch * p->heads_k * p->key_len * p->d_k;
  const int64_t v_count = (int64_t)p->batch * p->heads_k * p->key_len * p->d_v;
  const int64_t y_count = (int64_t)p->batch * p->heads * p->query_len * p->d_v;
  const int64_t lse_count = (int64_t)p->batch * p->heads * p->query_len;
  Tensors t;
  memset(&t, 0, sizeof t);
  t.q = random_values(q_count, 1.0);
  t.k = random_values(k_count, 1.0);
  t.v = random_values(v_count, 1.0);
  t.dq = upload(t.q, q_count, p->element);
  t.dk = upload(t.k, k_count, p->element);
  t.dv = upload(t.v, v_count, p->element);
  CUDA_OK(cudaMalloc(&t.dy, (size_t)y_count * element_bytes(p->element) + 1));
  CUDA_OK(cudaMalloc(&t.dlse, (size_t)lse_count * element_bytes(lse_element) + 1));
  /* Poison: every output element must be written. */
  CUDA_OK(cudaMemset(t.dy, 0xFF, (size_t)y_count * element_bytes(p->element)));
  CUDA_OK(cudaMemset(t.dlse, 0xFF, (size_t)lse_count * element_bytes(lse_element)));

  baracuda_flash_sdpa_descriptor desc;
  baracuda_flash_sdpa_descriptor_init(&desc, p->batch, p->heads, p->query_len, p->key_len, p->d_k,
                                      p->d_v, p->element);
  desc.is_causal = p->is_causal;
  desc.window_size_left = p->window_left;
  desc.window_size_right = p->window_right;
  desc.softcap = p->softcap;
  desc.alignment = p->bottom_right ? BARACUDA_ALIGN_BOTTOM_RIGHT : BARACUDA_ALIGN_TOP_LEFT;

  baracuda_flash_sdpa_args args;
  memset(&args, 0, sizeof args);
  int64_t shape[4], strides[4];
  shape[0] = p->batch;
  shape[1] = p->heads;
  shape[2] = p->query_len;
  shape[3] = p->d_k;
  strides4(p, p->heads, p->query_len, p->d_k, strides);
  args.q = view(t.dq, p->element, 4, shape, strides, q_count);
  shape[1] = p->heads_k;
  shape[2] = p->key_len;
  strides4(p, p->heads_k, p->key_len, p->d_k, strides);
  args.k = view(t.dk, p->element, 4, shape, strides, k_count);
  shape[3] = p->d_v;
  strides4(p, p->heads_k, p->key_len, p->d_v, strides);
  args.v = view(t.dv, p->element, 4, shape, strides, v_count);
  shape[1] = p->heads;
  shape[2] = p->query_len;
  strides4(p, p->heads, p->query_len, p->d_v, strides);
  args.y = view(t.dy, p->element, 4, shape, strides, y_count);
  const int64_t lse_shape[3] = {p->batch, p->heads, p->query_len};
  const int64_t lse_strides[3] = {(int64_t)p->heads * p->query_len, p->query_len, 1};
  args.lse = view(t.dlse, lse_element, 3, lse_shape, lse_strides, lse_count);
  if (p->alibi) {
    t.slopes = random_values(p->heads, 0.5);
    for (int h = 0; h < p->heads; ++h) t.slopes[h] = fabs(t.slopes[h]);
    t.dslopes = upload(t.slopes, p->heads, BARACUDA_ELEMENT_F32);
    const int64_t slopes_shape[2] = {1, p->heads};
    const int64_t slopes_strides[2] = {0, 1};
    args.alibi_slopes =
        view(t.dslopes, BARACUDA_ELEMENT_F32, 2, slopes_shape, slopes_strides, p->heads);
  }
  if (p->mask) {
    int64_t mask_count = p->mask == 1 ? (int64_t)p->batch * p->heads * p->query_len * p->key_len
                                      : (int64_t)p->batch * p->key_len;
    t.mask = random_values(mask_count, 2.0);
    t.dmask = upload(t.mask, mask_count, BARACUDA_ELEMENT_F32);
    int64_t mask_shape[4] = {p->batch, p->heads, p->query_len, p->key_len};
    int64_t mask_strides[4] = {(int64_t)p->heads * p->query_len * p->key_len,
                               (int64_t)p->query_len * p->key_len, p->key_len, 1};
    if (p->mask == 2) {
      mask_shape[1] = 1;
      mask_shape[2] = 1;
      mask_strides[0] = p->key_len;
      mask_strides[1] = 0;
      mask_strides[2] = 0;
    }
    args.mask = view(t.dmask, BARACUDA_ELEMENT_F32, 4, mask_shape, mask_strides, mask_count);
  }

  baracuda_flash_sdpa_plan plan = NULL;
  baracuda_status status = baracuda_flash_sdpa_plan_select(&desc, NULL, &plan);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: select: %s", p->name,
        baracuda_last_error_message());
  if (status != BARACUDA_STATUS_SUCCESS) return;
  status = baracuda_flash_sdpa_run(plan, &args, NULL, 0, 0);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "%s: run: %s", p->name, baracuda_last_error_message());
  CUDA_OK(cudaDeviceSynchronize());
  baracuda_flash_sdpa_plan_destroy(plan);

  double* y = malloc(sizeof(double) * (size_t)(y_count > 0 ? y_count : 1));
  double* lse = malloc(sizeof(double) * (size_t)(lse_count > 0 ? lse_count : 1));
  download(t.dy, p->element, y_count, y);
  download(t.dlse, lse_element, lse_count, lse);

  double* y_row = malloc(sizeof(double) * (size_t)p->d_v);
  double worst_y = 0.0, worst_lse = 0.0;
  int lse_infinity_mismatch = 0, not_finite = 0;
  for (int b = 0; b < p->batch; ++b) {
    for (int h = 0; h < p->heads; ++h) {
      for (int i = 0; i < p->query_len; ++i) {
        double expected_lse;
        reference_row(p, &t, desc.scale, b, h, i, y_row, &expected_lse);
        for (int d = 0; d < p->d_v; ++d) {
          double got = y[offset4(p, p->heads, p->query_len, p->d_v, b, h, i, d)];
          if (!isfinite(got)) ++not_finite;
          double error = fabs(got - y_row[d]);
          if (error > worst_y) worst_y = error;
        }
        double got_lse = lse[((int64_t)b * p->heads + h) * p->query_len + i];
        if (isinf(expected_lse) || isinf(got_lse)) {
          if (!(isinf(expected_lse) && isinf(got_lse) && got_lse < 0)) ++lse_infinity_mismatch;
        } else {
          double error = fabs(got_lse - expected_lse) / fmax(1.0, fabs(expected_lse));
          if (error > worst_lse) worst_lse = error;
        }
      }
    }
  }
  const double tol = tolerance(p->element);
  CHECK(not_finite == 0, "%s: %d output elements not finite (unwritten or NaN)", p->name,
        not_finite);
  CHECK(lse_infinity_mismatch == 0, "%s: %d rows disagree on -inf LSE", p->name,
        lse_infinity_mismatch);
  CHECK(worst_y <= tol, "%s: max |y - reference| = %.3e > %.1e", p->name, worst_y, tol);
  CHECK(worst_lse <= tol, "%s: max LSE error = %.3e > %.1e", p->name, worst_lse, tol);
  printf("%-34s y err %.2e  lse err %.2e\n", p->name, worst_y, worst_lse);

  free(y);
  free(lse);
  free(y_row);
  free(t.q);
  free(t.k);
  free(t.v);
  free(t.mask);
  free(t.slopes);
  cudaFree(t.dq);
  cudaFree(t.dk);
  cudaFree(t.dv);
  cudaFree(t.dy);
  cudaFree(t.dlse);
  cudaFree(t.dmask);
  cudaFree(t.dslopes);
}

/* The seed entry point on the f32 problem must give what the plan gives. */
static void seed_entry_point_case(void) {
  const int B = 1, H = 2, S = 33, D = 64;
  const int64_t count = (int64_t)B * H * S * D;
  double* q = random_values(count, 1.0);
  double* k = random_values(count, 1.0);
  double* v = random_values(count, 1.0);
  void* dq = upload(q, count, BARACUDA_ELEMENT_F32);
  void* dk = upload(k, count, BARACUDA_ELEMENT_F32);
  void* dv = upload(v, count, BARACUDA_ELEMENT_F32);
  void *dy = NULL, *dlse = NULL;
  CUDA_OK(cudaMalloc(&dy, (size_t)count * 4));
  CUDA_OK(cudaMalloc(&dlse, (size_t)B * H * S * 4));
  baracuda_status status = baracuda_kernels_flash_sdpa_f32_run(B, H, S, S, D, D, 0.125f, 1, dq, dk,
                                                               dv, dy, dlse, NULL, 0, 0);
  CHECK(status == BARACUDA_STATUS_SUCCESS, "seed f32 run: %s", baracuda_last_error_message());
  CUDA_OK(cudaDeviceSynchronize());
  double* y = malloc(sizeof(double) * (size_t)count);
  download(dy, BARACUDA_ELEMENT_F32, count, y);
  Problem p = {"seed",
               BARACUDA_ELEMENT_F32,
               B,
               H,
               H,
               S,
               S,
               D,
               D,
               1,
               BARACUDA_WINDOW_UNBOUNDED,
               BARACUDA_WINDOW_UNBOUNDED,
               0,
               0.0,
               0,
               0,
               0};
  Tensors t;
  memset(&t, 0, sizeof t);
  t.q = q;
  t.k = k;
  t.v = v;
  double y_row[64], lse;
  double worst = 0.0;
  for (int h = 0; h < H; ++h) {
    for (int i = 0; i < S; ++i) {
      reference_row(&p, &t, 0.125, 0, h, i, y_row, &lse);
      for (int d = 0; d < D; ++d) {
        double error = fabs(y[offset4(&p, H, S, D, 0, h, i, d)] - y_row[d]);
        if (error > worst) worst = error;
      }
    }
  }
  CHECK(worst <= 1e-5, "seed f32 causal: max error %.3e", worst);
  free(q);
  free(k);
  free(v);
  free(y);
  cudaFree(dq);
  cudaFree(dk);
  cudaFree(dv);
  cudaFree(dy);
  cudaFree(dlse);
}

int main(void) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    printf("skipped: no CUDA device\n");
    return kSkipExitCode;
  }
  const int U = BARACUDA_WINDOW_UNBOUNDED;
  const baracuda_element F32 = BARACUDA_ELEMENT_F32, F64 = BARACUDA_ELEMENT_F64,
                         BF16 = BARACUDA_ELEMENT_BF16, F16 = BARACUDA_ELEMENT_F16;
  /* name, element, B, H, Hk, Sq, Sk, Dk, Dv, causal, left, right, bottom_right, softcap,
   * alibi, mask, bshd */
  const Problem problems[] = {
      {"f32 plain", F32, 2, 4, 4, 67, 67, 64, 64, 0, U, U, 0, 0.0, 0, 0, 0},
      {"f32 causal top-left Sq<Sk", F32, 1, 2, 2, 17, 40, 32, 32, 1, U, U, 0, 0.0, 0, 0, 0},
      {"f32 causal bottom-right Sq<Sk", F32, 1, 2, 2, 17, 40, 32, 32, 1, U, U, 1, 0.0, 0, 0, 0},
      {"f32 causal bottom-right Sq>Sk", F32, 1, 2, 2, 40, 17, 32, 32, 1, U, U, 1, 0.0, 0, 0, 0},
      {"f32 window", F32, 1, 2, 2, 100, 100, 64, 64, 0, 7, 3, 0, 0.0, 0, 0, 0},
      {"f32 causal window", F32, 1, 2, 2, 100, 100, 64, 64, 1, 20, U, 0, 0.0, 0, 0, 0},
      {"f32 softcap alibi", F32, 2, 4, 4, 33, 45, 64, 64, 0, U, U, 0, 5.0, 1, 0, 0},
      {"f32 mask full", F32, 2, 2, 2, 19, 70, 64, 64, 0, U, U, 0, 0.0, 0, 1, 0},
      {"f32 mask key padding causal", F32, 2, 2, 2, 19, 70, 64, 64, 1, U, U, 1, 0.0, 0, 2, 0},
      {"f32 gqa bshd dv!=dk", F32, 2, 8, 2, 45, 45, 64, 32, 1, U, U, 0, 0.0, 0, 0, 1},
      {"f32 d8 one query", F32, 1, 1, 1, 1, 1000, 8, 8, 0, U, U, 0, 0.0, 0, 0, 0},
      {"f32 d256", F32, 1, 2, 2, 33, 65, 256, 256, 0, U, U, 0, 0.0, 0, 0, 0},
      {"f32 d128 everything", F32, 2, 4, 2, 50, 61, 128, 96, 1, 30, U, 1, 20.0, 1, 2, 1},
      {"f64 plain", F64, 1, 2, 2, 37, 53, 64, 64, 0, U, U, 0, 0.0, 0, 0, 0},
      {"f64 d256 causal", F64, 1, 2, 1, 37, 53, 256, 256, 1, U, U, 1, 0.0, 0, 0, 1},
      {"f64 everything", F64, 2, 4, 2, 50, 61, 128, 96, 1, 30, U, 1, 20.0, 1, 1, 1},
      {"bf16 plain", BF16, 2, 4, 4, 65, 129, 128, 128, 0, U, U, 0, 0.0, 0, 0, 0},
      {"bf16 causal gqa", BF16, 1, 8, 1, 64, 64, 64, 64, 1, U, U, 0, 0.0, 0, 0, 1},
      /* The hopper kernel on sm_90: several query and key tiles, every bucket, the modifiers. */
      {"bf16 d64 tiles", BF16, 2, 2, 2, 300, 500, 64, 64, 0, U, U, 0, 0.0, 0, 0, 0},
      {"bf16 d128 causal gqa bshd", BF16, 1, 4, 2, 400, 400, 128, 128, 1, U, U, 0, 0.0, 0, 0, 1},
      {"bf16 d256 causal bottom-right", BF16, 1, 2, 1, 200, 333, 256, 256, 1, U, U, 1, 0.0, 0, 0,
       0},
      {"bf16 d128 mask full window", BF16, 1, 2, 2, 260, 300, 128, 128, 0, 90, 40, 0, 0.0, 0, 1, 0},
      {"bf16 d96 everything", BF16, 2, 4, 2, 150, 270, 96, 96, 1, 100, U, 1, 20.0, 1, 2, 1},
      /* More query tiles (128 rows, 192 at d64) than an H200 has SMs (132): each persistent
       * block walks several, the K / V rings and the Q barriers running on from one to the next. */
      {"bf16 d64 persistent", BF16, 6, 12, 12, 200, 130, 64, 64, 0, U, U, 0, 0.0, 0, 0, 0},
      {"bf16 d128 persistent causal gqa", BF16, 3, 16, 4, 260, 260, 128, 128, 1, U, U, 0, 0.0, 0, 0,
       1},
      /* Paired query tiles (a causal mask or a window, more tiles than SMs) with an odd count per
       * head (7 of 128 rows, 5 of 192 at d64), and bottom-right rows that see no key: whole tiles
       * with no key tile. */
      {"f16 d64 persistent bottom-right window", F16, 2, 36, 36, 800, 300, 64, 64, 1, 100, U, 1,
       0.0, 0, 0, 0},
      /* The staged mask across a persistent block's tiles. */
      {"bf16 d128 persistent causal mask", BF16, 2, 36, 12, 260, 260, 128, 128, 1, U, U, 0, 0.0, 0,
       1, 0},
  };
  for (size_t n = 0; n < sizeof problems / sizeof problems[0]; ++n) {
    run_case(&problems[n]);
  }
  seed_entry_point_case();
  return test_summary();
}
