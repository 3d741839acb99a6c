/* cuda_test.h - C entry points that run single CUDA kernels on host data, for
 * tests/test_cuda_parity.c. Each returns 0 on success, -1 on a CUDA error
 * (message in gptoss_last_error()). Matrices are row-major; bf16 values are
 * passed as uint16_t bit patterns. */
#ifndef GPTOSS_CUDA_TEST_H
#define GPTOSS_CUDA_TEST_H

#include <stdint.h>

#include "sampler_internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when a CUDA device can run kernels. */
int cuda_test_device(void);

/* out[t][n] = resid[t][n] + bias[n] + W[n] . x[t]; T <= 4 uses the matvec
 * kernel, T > 4 the cuBLAS bf16 path (activations rounded to bf16).
 * resid, bias may be NULL. */
int cuda_test_linear(const uint16_t *W, int N, int K, const float *x, int T, const float *bias,
                     const float *resid, float *out);

/* out[t] = rmsnorm(x[t]) * w. */
int cuda_test_rmsnorm(const float *x, const float *w, int T, int H, float eps, float *out);

/* RoPE (YaRN inv_freq/conc) of qkv rows [T, (nh+2nkv)*hd] in place (bias added
 * first when non-NULL), K/V to caches [slots, cap, nkv*hd] (fp32, in/out). */
int cuda_test_rope_kv(float *qkv, const float *bias, const float *inv_freq, float conc,
                      const int *pos, const int *slot, float *kc, float *vc, int slots,
                      int cap, int T, int nh, int nkv, int hd);

/* Attention with sinks over the caches. q [T, nh*hd] (rows of stride ldq),
 * out [T, nh*hd]. window 0 = full. */
int cuda_test_attention(const float *q, int ldq, const float *kc, const float *vc, int slots,
                        int cap, const int *pos, const int *slot, const float *sinks, int T,
                        int nh, int nkv, int hd, int window, float *out);

/* Selects the attention kernel used by cuda_test_attention for T > 4:
 * 1 = k_attention, 2 = tensor cores (cuda_attn_prefill.cu, GPTOSS_CUDA_ATTN=tc);
 * returns the previous one. */
int cuda_test_attention_variant(int version);

/* Router top-k: sel_e/sel_w [T, k]. */
int cuda_test_topk(const float *logits, int T, int E, int k, int *sel_e, float *sel_w);

/* Whole MoE block on h [T, H] (fp32) with router logits [T, E]:
 * x[t] += sum_j w_j (W_d swiglu(W_gu h + b_gu) + b_d). grouped = 0: decode
 * kernels (T <= 4); 1: grouped tensor-core GEMMs (activations split into bf16 hi + lo); 2: decode
 * kernels with the router top-k fused into the gate_up kernel. */
int cuda_test_moe(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                  const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                  const float *h, const float *router_logits, float *x, int T, int E, int k,
                  int H, int I, float limit, float alpha, int grouped);

/* Thread-block clusters resident at once (0: that cluster form is not used
 * here): v11 down (1, 4), decode attention (1, 1, 4) and (1, 1, 16). */
void cuda_test_cluster_caps(int *down_k4, int *attn_z4, int *attn_z16);

/* Selects the decode MoE kernel version used by cuda_test_moe (1, 4 or 5, see
 * GPTOSS_CUDA_MOE_DECODE in cuda_moe_decode.cu); returns the previous one. */
int cuda_test_moe_decode_variant(int version);

/* Selects the v7f decode kernel shapes by name ("g4w15", ...; NULL = default)
 * for gate_up and down (GPTOSS_CUDA_V7_GU / GPTOSS_CUDA_V7_DN). */
void cuda_test_moe_v7_shapes(const char *gate_up, const char *down);

/* Selects the grouped (prefill) GEMM used by cuda_test_moe with grouped = 1:
 * 1 = cuda_moe_gemm.cu, 2 = cuda_moe_gemm_v2.cu, 4 = cuda_moe_gemm_v4.cu
 * (GPTOSS_CUDA_MOE_GEMM); returns the previous one, or -1 (nothing changed)
 * when this device cannot run the one asked for. */
int cuda_test_moe_gemm_variant(int version);

/* Device sampling reduction (cuda_sample.cu) of R rows logits [R, V] (host),
 * as rq[r] asks, into res[r]; the candidates of row r land in
 * cand_id / cand_logit + r * PICK_CAND_CAP and res[r] points there (res[r].row
 * stays NULL). */
int cuda_test_pick(const float *logits, int R, int V, const pick_request *rq, pick_result *res,
                   int32_t *cand_id, float *cand_logit);

#ifdef __cplusplus
}
#endif
#endif
