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

static const size_t STACK = 256 * 1024; // a thread's stack: kernels keep small frames, WMMA fragments 1 KiB each
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
