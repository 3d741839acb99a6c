/* cuda_wgmma.cuh - Hopper warpgroup MMA (wgmma, sm_90a only) helpers shared by
 * the prefill expert GEMM v4: the shared-memory descriptor of a
 * 128-byte-swizzled K-major operand, fence / commit / wait, and
 * wg_mma<N>: d (64 x N fp32, N / 2 per thread) += A (bf16, registers,
 * mma.m16n8k16's A layout per warp) x B (bf16, N rows x 16 K, descriptor).
 * The N = 16 .. 128 forms differ only in their operand lists (inline asm
 * has no variadic operands: WG_MMA writes each from cumulative lists). CU_WGMMA is defined where the code
 * being compiled is sm_90a's. */
#ifndef GPTOSS_CUDA_WGMMA_CUH
#define GPTOSS_CUDA_WGMMA_CUH

#include <stdint.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define CU_WGMMA 1

/* K-major operand, 128-byte swizzle: start >> 4, leading offset 1 (unused
 * by this layout), stride 1024 bytes between 8-row atoms, swizzle mode 1 */
static __device__ __forceinline__ uint64_t wg_desc(uint32_t saddr) {
    return (uint64_t)((saddr & 0x3FFFFu) >> 4) | (1ull << 16) | (64ull << 32) | (1ull << 62);
}

static __device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
static __device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> static __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* Accumulator lists of wg_mma<16 K>: registers %0 .. %(8K - 1) and their
 * "+f" operands d[0 .. 8K - 1], 8 more per step of 16 in N. */
#define WG_D(i) "+f"(d[i])
#define WG_R1 "%0,%1,%2,%3,%4,%5,%6,%7"
#define WG_R2 WG_R1 ",%8,%9,%10,%11,%12,%13,%14,%15"
#define WG_R3 WG_R2 ",%16,%17,%18,%19,%20,%21,%22,%23"
#define WG_R4 WG_R3 ",%24,%25,%26,%27,%28,%29,%30,%31"
#define WG_R5 WG_R4 ",%32,%33,%34,%35,%36,%37,%38,%39"
#define WG_R6 WG_R5 ",%40,%41,%42,%43,%44,%45,%46,%47"
#define WG_R7 WG_R6 ",%48,%49,%50,%51,%52,%53,%54,%55"
#define WG_R8 WG_R7 ",%56,%57,%58,%59,%60,%61,%62,%63"
#define WG_O1 WG_D(0), WG_D(1), WG_D(2), WG_D(3), WG_D(4), WG_D(5), WG_D(6), WG_D(7)
#define WG_O2 WG_O1, WG_D(8), WG_D(9), WG_D(10), WG_D(11), WG_D(12), WG_D(13), WG_D(14), WG_D(15)
#define WG_O3 WG_O2, WG_D(16), WG_D(17), WG_D(18), WG_D(19), WG_D(20), WG_D(21), WG_D(22), WG_D(23)
#define WG_O4 WG_O3, WG_D(24), WG_D(25), WG_D(26), WG_D(27), WG_D(28), WG_D(29), WG_D(30), WG_D(31)
#define WG_O5 WG_O4, WG_D(32), WG_D(33), WG_D(34), WG_D(35), WG_D(36), WG_D(37), WG_D(38), WG_D(39)
#define WG_O6 WG_O5, WG_D(40), WG_D(41), WG_D(42), WG_D(43), WG_D(44), WG_D(45), WG_D(46), WG_D(47)
#define WG_O7 WG_O6, WG_D(48), WG_D(49), WG_D(50), WG_D(51), WG_D(52), WG_D(53), WG_D(54), WG_D(55)
#define WG_O8 WG_O7, WG_D(56), WG_D(57), WG_D(58), WG_D(59), WG_D(60), WG_D(61), WG_D(62), WG_D(63)

/* wg_mma<N> with K = N / 16 accumulator groups; A0..A3, DS, P: the operand
 * numbers of the A registers, the descriptor and the predicate (8K .. 8K + 5) */
#define WG_MMA(N, K, A0, A1, A2, A3, DS, P)                                                              \
    template <> __device__ __forceinline__ void wg_mma<N>(float(&d)[N / 2], const uint32_t(&a)[4],       \
                                                          uint64_t desc) {                             \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #P ", 0;\n"                                  \
                     "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.bf16.bf16 {" WG_R##K "}, {%" #A0     \
                     ",%" #A1 ",%" #A2 ",%" #A3 "}, %" #DS ", p, 1, 1, 0;\n}\n"                           \
                     : WG_O##K                                                                         \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));                  \
    }

template <int N> __device__ __forceinline__ void wg_mma(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc);
WG_MMA(16, 1, 8, 9, 10, 11, 12, 13)
WG_MMA(32, 2, 16, 17, 18, 19, 20, 21)
WG_MMA(48, 3, 24, 25, 26, 27, 28, 29)
WG_MMA(64, 4, 32, 33, 34, 35, 36, 37)
WG_MMA(80, 5, 40, 41, 42, 43, 44, 45)
WG_MMA(96, 6, 48, 49, 50, 51, 52, 53)
WG_MMA(112, 7, 56, 57, 58, 59, 60, 61)
WG_MMA(128, 8, 64, 65, 66, 67, 68, 69)
#undef WG_MMA

#endif /* sm_90a */
#endif
