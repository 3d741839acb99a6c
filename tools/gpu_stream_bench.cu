/* tools/gpu_stream_bench.cu - what a single kernel that reads S bytes of weights
 * once can reach on this GPU, for the sizes a decode step reads per kernel
 * (o_proj 23.6 MB, QKV 29.5 MB, MoE down 17.6 MB, gate_up 35.4 MB): the floor
 * under each decode kernel, launch and ramp included, without any arithmetic.
 *
 *   make build/gpu_stream_bench (with CUDA; tools/device_prep.sh builds it into
 *   build-final), then on the GPU machine: STAGES=stream bash tools/device_run.sh
 *
 * Each measurement is a CUDA graph of 64 launches in one stream (as the decode
 * graph), every launch reading a different slice of a 3 GiB pool so that
 * nothing comes from L2; best of 5 graph launches, time per kernel. Kernels:
 *   contig  - the S bytes split into one contiguous piece per block (2 blocks
 *             of 512 threads per SM), U 16-byte loads in flight per thread;
 *   rows    - the decode matvec's pattern: a warp per 8 KB row, four 16-byte
 *             loads per lane per round, the next round after the last is used;
 *   rows16  - the same rows with all 16 loads per lane issued at once;
 *   empty   - a kernel that does nothing (the launch floor).
 * "pdl" rows: the same graph with programmatic stream serialization (each
 * kernel may start while its predecessor drains; no data dependency here).
 * Before each timing, one launch keeps every thread's XOR of the words it read
 * and the program compares their XOR with the host's over the same bytes
 * (exit status 1 and a FAIL line when a kernel skipped or repeated some). */
#include "cuda/cuda_matvec.cuh" /* ld_stream, pdl_launch_dependents, pdl_wait: the decode kernels' forms */

#include <stdio.h>
#include <stdlib.h>

#define CK(x)                                                                        \
    do {                                                                             \
        cudaError_t e_ = (x);                                                        \
        if (e_ != cudaSuccess) {                                                     \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* lets the next kernel launch, then waits for this one's predecessor (no-ops
 * without the launch attribute) */
static __device__ __forceinline__ void pdl_open(void) {
    pdl_launch_dependents();
    pdl_wait();
}

/* The XOR of every 32-bit word a thread read: kept (so the loads stay) and,
 * with check != NULL, stored per thread so that the host can compare the
 * XOR of all of them with the XOR of the bytes the launch was to read. */
static __device__ __forceinline__ void keep(unsigned acc, unsigned *sink, unsigned *check) {
    if (check) check[(size_t)blockIdx.x * blockDim.x + threadIdx.x] = acc;
    else if (acc == 0x9e3779b9u) sink[0] = acc;
}

/* word i of the pool (the host recomputes it) */
static __host__ __device__ __forceinline__ unsigned pool_word(size_t i) {
    return (unsigned)(i * 2654435761u) ^ (unsigned)(i >> 13);
}

__global__ void k_fill(unsigned *p, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = pool_word(i);
}

/* n16 chunks of 16 bytes from p, split into gridDim.x contiguous pieces */
template <int U>
__global__ void __launch_bounds__(512) k_contig(const uint4 *p, size_t n16, unsigned *sink, unsigned *check) {
    pdl_open();
    size_t per = (n16 + gridDim.x - 1) / gridDim.x, lo = per * blockIdx.x, hi = lo + per < n16 ? lo + per : n16;
    unsigned acc = 0;
    for (size_t c = lo + threadIdx.x; c < hi; c += (size_t)U * blockDim.x) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            size_t i = c + (size_t)u * blockDim.x;
            v[u] = i < hi ? ld_stream(p + i) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    keep(acc, sink, check);
}

/* rows of 8 KB (512 chunks), a warp per row, 8 warps per block; ROUND loads per
 * lane in flight (4: the decode matvec, 16: the whole row at once) */
template <int ROUND>
__global__ void __launch_bounds__(256) k_rows(const uint4 *p, int nrows, unsigned *sink, unsigned *check) {
    pdl_open();
    int lane = threadIdx.x & 31, row = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (row >= nrows) {
        keep(0u, sink, check);
        return;
    }
    const uint4 *r = p + (size_t)row * 512;
    unsigned acc = 0;
    for (int c = lane; c < 512; c += 32 * ROUND) {
        uint4 v[ROUND];
#pragma unroll
        for (int u = 0; u < ROUND; u++) v[u] = ld_stream(r + c + 32 * u);
#pragma unroll
        for (int u = 0; u < ROUND; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    keep(acc, sink, check);
}

__global__ void k_empty(unsigned *sink) {
    pdl_open();
    if (threadIdx.x == 1023) sink[1] = 1;
}

enum { K_CONTIG8, K_CONTIG16, K_ROWS4, K_ROWS16, K_EMPTY };
static const char *kname[] = { "contig U=8", "contig U=16", "rows (4/round)", "rows16 (all)", "empty" };

/* launches kind on [p, p + bytes); returns its thread count (the check slots it fills) */
static size_t launch(int kind, const uint4 *p, size_t bytes, unsigned *sink, unsigned *check, int sms, int pdl,
                     cudaStream_t s) {
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1] = {};
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    cfg.stream = s;
    size_t n16 = bytes / 16;
    int nrows = (int)(bytes / 8192);
    switch (kind) {
    case K_CONTIG8:
    case K_CONTIG16:
        cfg.gridDim = dim3(sms * 2);
        cfg.blockDim = dim3(512);
        if (kind == K_CONTIG8) CK(cudaLaunchKernelEx(&cfg, k_contig<8>, p, n16, sink, check));
        else CK(cudaLaunchKernelEx(&cfg, k_contig<16>, p, n16, sink, check));
        break;
    case K_ROWS4:
    case K_ROWS16:
        cfg.gridDim = dim3((nrows + 7) / 8);
        cfg.blockDim = dim3(256);
        if (kind == K_ROWS4) CK(cudaLaunchKernelEx(&cfg, k_rows<4>, p, nrows, sink, check));
        else CK(cudaLaunchKernelEx(&cfg, k_rows<16>, p, nrows, sink, check));
        break;
    default:
        cfg.gridDim = dim3(sms);
        cfg.blockDim = dim3(512);
        CK(cudaLaunchKernelEx(&cfg, k_empty, sink));
    }
    return (size_t)cfg.gridDim.x * cfg.blockDim.x;
}

/* One launch of kind on the pool's first `bytes` with the per-thread XORs kept:
 * their XOR must equal the XOR of the words there (every byte read once). */
static int verify(int kind, const uint4 *p, size_t bytes, unsigned *sink, unsigned *check_d, unsigned *check_h,
                  size_t check_max, int sms, cudaStream_t s) {
    CK(cudaMemsetAsync(check_d, 0, check_max * sizeof(unsigned), s));
    size_t n = launch(kind, p, bytes, sink, check_d, sms, 0, s);
    if (n > check_max) return 0;
    CK(cudaMemcpyAsync(check_h, check_d, n * sizeof(unsigned), cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    unsigned got = 0, want = 0;
    for (size_t i = 0; i < n; i++) got ^= check_h[i];
    for (size_t i = 0; i < bytes / 4; i++) want ^= pool_word(i);
    return got == want;
}

int main(void) {
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    const size_t pool = (size_t)3 << 30;
    const size_t check_max = (size_t)2 << 20;
    uint8_t *buf;
    unsigned *sink, *check_d, *check_h;
    CK(cudaMalloc(&buf, pool));
    CK(cudaMalloc(&sink, 64));
    CK(cudaMalloc(&check_d, check_max * sizeof(unsigned)));
    CK(cudaMallocHost(&check_h, check_max * sizeof(unsigned)));
    k_fill<<<sms * 4, 512>>>((unsigned *)buf, pool / 4);
    CK(cudaDeviceSynchronize());
    int bad = 0;
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    const double mb[] = { 4, 8, 17.6, 23.6, 29.5, 35.4, 64, 256 };
    const int NL = 64;
    printf("%d SMs; per kernel: microseconds, TB/s (graph of %d launches, each on fresh bytes; best of 5)\n", sms, NL);
    for (int pdl = 0; pdl < 2; pdl++)
        for (int kind = 0; kind <= K_EMPTY; kind++)
            for (int si = 0; si < (int)(sizeof mb / sizeof mb[0]); si++) {
                if (kind == K_EMPTY && si > 0) break;
                size_t bytes = (size_t)(mb[si] * 1e6) / 8192 * 8192;
                if (kind != K_EMPTY && !pdl &&
                    !verify(kind, (const uint4 *)buf, bytes, sink, check_d, check_h, check_max, sms, s)) {
                    printf("FAIL: %s on %.1f MB did not read every byte once\n", kname[kind], bytes / 1e6);
                    bad = 1;
                }
                cudaGraph_t g;
                cudaGraphExec_t ge;
                CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
                size_t off = 0;
                for (int i = 0; i < NL; i++) {
                    if (off + bytes > pool) off = 0;
                    launch(kind, (const uint4 *)(buf + off), bytes, sink, NULL, sms, pdl, s);
                    off += (bytes + 4095) / 4096 * 4096 + 4096;
                }
                CK(cudaStreamEndCapture(s, &g));
                CK(cudaGraphInstantiate(&ge, g, 0));
                float best = 1e30f;
                for (int r = 0; r < 6; r++) {
                    CK(cudaEventRecord(e0, s));
                    CK(cudaGraphLaunch(ge, s));
                    CK(cudaEventRecord(e1, s));
                    CK(cudaEventSynchronize(e1));
                    float ms;
                    CK(cudaEventElapsedTime(&ms, e0, e1));
                    if (r > 0 && ms < best) best = ms; /* the first launch warms up */
                }
                double us = best * 1000.0 / NL;
                if (kind == K_EMPTY)
                    printf("%-4s %-15s %8s  %7.2f us\n", pdl ? "pdl" : "", kname[kind], "-", us);
                else
                    printf("%-4s %-15s %6.1f MB  %7.2f us  %5.2f TB/s\n", pdl ? "pdl" : "", kname[kind],
                           bytes / 1e6, us, bytes / us / 1e6);
                CK(cudaGraphExecDestroy(ge));
                CK(cudaGraphDestroy(g));
            }
    return bad;
}
