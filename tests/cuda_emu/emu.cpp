// The emulator's scheduler: one coroutine per thread of the current block.
#include "emu.h"

#include <cstdarg>
#include <ucontext.h>
#include <vector>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
void *emu_dyn_smem;
cudaError_t emu_last_error;
int emu_smem_attr;

void emu_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "EMU FAIL (block %u,%u,%u thread %u): ", blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

enum wait_kind { RUNNABLE, AT_BLOCK, AT_WARP, DONE };

struct emu_thread {
    ucontext_t ctx;
    wait_kind state;
    uint3 tid;
};

static const size_t STACK = 256 * 1024; // a thread's stack: kernels keep small frames
static std::vector<emu_thread> threads;
static std::vector<char *> stacks;
static ucontext_t sched_ctx;
static int current;
static const std::function<void()> *body_fn;
static float shfl_slot[32][32]; // [warp][lane]

static void yield(wait_kind k)
{
    threads[current].state = k;
    swapcontext(&threads[current].ctx, &sched_ctx);
}

void __syncthreads() { yield(AT_BLOCK); }
void emu_warp_barrier() { yield(AT_WARP); }
void __syncwarp(unsigned) { yield(AT_WARP); }

float emu_shfl(float v, int src)
{
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (src < 0 || src > 31) emu_fail("shuffle from lane %d", src);
    shfl_slot[warp][lane] = v;
    yield(AT_WARP);
    float r = shfl_slot[warp][src];
    yield(AT_WARP);
    return r;
}

// mma.sync m16n8k16 (kernels/mma_16816.cuh): register i of lane l is
// a_slot[warp][l][i]; element (r, k) of A sits in lane (r % 8) * 4 + (k % 8) / 2,
// register (r >= 8) + 2 (k >= 8), half k % 2; element (k, n) of B in lane
// n * 4 + (k % 8) / 2, register (k >= 8), half k % 2.
static uint32_t a_slot[32][32][4], b_slot[32][32][2];

static float half_of(uint32_t reg, int hi, bool bf16)
{
    uint16_t bits = (uint16_t)(hi ? reg >> 16 : reg & 0xffff);
    return bf16 ? kiln_bf16_to_f32(bits) : kiln_f16_to_f32(bits);
}

void emu_mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2], bool bf16)
{
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    memcpy(a_slot[warp][lane], a, sizeof a_slot[0][0]);
    memcpy(b_slot[warp][lane], b, sizeof b_slot[0][0]);
    yield(AT_WARP);
    for (int i = 0; i < 4; i++) {
        int r = g + 8 * (i / 2), n = 2 * t + i % 2;
        float acc = d[i];
        for (int k = 0; k < 16; k++) {
            float av = half_of(a_slot[warp][(r % 8) * 4 + (k % 8) / 2][(r >= 8) + 2 * (k >= 8)], k % 2, bf16);
            float bv = half_of(b_slot[warp][n * 4 + (k % 8) / 2][k >= 8], k % 2, bf16);
            acc += av * bv;
        }
        d[i] = acc;
    }
    yield(AT_WARP); // every lane has read the slots before any posts again
}

static void trampoline()
{
    (*body_fn)();
    threads[current].state = DONE;
    swapcontext(&threads[current].ctx, &sched_ctx);
}

void emu_run(const std::function<void()> &body, dim3 grid, dim3 block, size_t smem)
{
    unsigned n = block.x * block.y * block.z;
    if (n == 0 || n > 1024) emu_fail("block of %u threads", n);
    if (grid.y > 65535 || grid.z > 65535 || grid.x == 0 || grid.y == 0 || grid.z == 0)
        emu_fail("grid %u x %u x %u", grid.x, grid.y, grid.z);
    if (smem > 48 * 1024 && (int)smem > emu_smem_attr) emu_fail("%zu bytes of dynamic smem without the attribute", smem);
    if (smem > 101376) emu_fail("%zu bytes of dynamic smem exceed sm_86's 99 KiB", smem);
    body_fn = &body;
    gridDim = grid;
    blockDim = block;
    threads.assign(n, emu_thread{});
    while (stacks.size() < n) stacks.push_back((char *)malloc(STACK));
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                blockIdx = {bx, by, bz};
                // exactly the bytes asked for, so AddressSanitizer sees overruns
                char *dyn = smem ? (char *)aligned_alloc(128, (smem + 127) / 128 * 128) : nullptr;
                if (dyn) memset(dyn, 0xcd, smem); // garbage, as on a GPU
                emu_dyn_smem = dyn;
                for (unsigned t = 0; t < n; t++) {
                    emu_thread &th = threads[t];
                    th.state = RUNNABLE;
                    th.tid = {t % block.x, t / block.x % block.y, t / (block.x * block.y)};
                    getcontext(&th.ctx);
                    th.ctx.uc_stack.ss_sp = stacks[t];
                    th.ctx.uc_stack.ss_size = STACK;
                    th.ctx.uc_link = nullptr;
                    makecontext(&th.ctx, trampoline, 0);
                }
                // run every runnable thread to its next barrier, then release
                // the barriers that every live thread of their warp/block reached
                for (;;) {
                    bool ran = false;
                    for (unsigned t = 0; t < n; t++)
                        if (threads[t].state == RUNNABLE) {
                            current = (int)t;
                            threadIdx = threads[t].tid;
                            swapcontext(&sched_ctx, &threads[t].ctx);
                            ran = true;
                        }
                    if (ran) continue;
                    bool all_done = true, released = false;
                    for (unsigned t = 0; t < n; t++) all_done &= threads[t].state == DONE;
                    if (all_done) break;
                    // warps whose live lanes all wait at a warp barrier
                    for (unsigned w = 0; w * 32 < n; w++) {
                        bool all = true, any = false;
                        for (unsigned t = w * 32; t < n && t < w * 32 + 32; t++) {
                            if (threads[t].state == DONE) continue;
                            any = true;
                            all &= threads[t].state == AT_WARP;
                        }
                        if (any && all) {
                            for (unsigned t = w * 32; t < n && t < w * 32 + 32; t++)
                                if (threads[t].state == AT_WARP) threads[t].state = RUNNABLE;
                            released = true;
                        }
                    }
                    if (released) continue;
                    bool all_block = true;
                    for (unsigned t = 0; t < n; t++)
                        if (threads[t].state != DONE) all_block &= threads[t].state == AT_BLOCK;
                    if (all_block) {
                        for (unsigned t = 0; t < n; t++)
                            if (threads[t].state == AT_BLOCK) threads[t].state = RUNNABLE;
                        continue;
                    }
                    emu_fail("deadlock: threads wait at different barriers");
                }
                free(dyn);
            }
}
