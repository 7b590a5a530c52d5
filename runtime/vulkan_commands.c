/* Recording and submitting work: command buffers, the barriers between
 * dependent commands, and compute pipelines built on first use.
 *
 * Ops and copies are recorded into the current command buffer. Every
 * BATCH_COMMANDS commands it is submitted without waiting and recording goes
 * on in the other one, so the device starts while the host is still
 * recording a model step; download() and synchronize() submit and wait.
 *
 * A recording (kiln_graph's replay of a repeated run) is a command buffer of
 * its own, begun after everything before it was submitted and never split:
 * each replay submits it again after the pending commands (the step's
 * uploads). Its first command is a barrier, as in every command buffer, so it
 * runs after earlier submissions, and the buffer after it starts with one too. */
#include "vulkan_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define BATCH_COMMANDS 256

kiln_status kiln_vk_commands_init(kiln_vk *vk)
{
    VkCommandPoolCreateInfo pool = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = vk->queue_family,
    };
    VK_TRY(vk->fn.vkCreateCommandPool(vk->device, &pool, NULL, &vk->command_pool));
    VkCommandBufferAllocateInfo alloc = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vk->command_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VkFenceCreateInfo fence = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    for (int i = 0; i < 2; i++) {
        VK_TRY(vk->fn.vkAllocateCommandBuffers(vk->device, &alloc, &vk->slots[i].cmd));
        VK_TRY(vk->fn.vkCreateFence(vk->device, &fence, NULL, &vk->slots[i].fence));
    }
    VK_TRY(vk->fn.vkCreateFence(vk->device, &fence, NULL, &vk->replay_fence));
    VkPushConstantRange push = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = KILN_VK_PUSH_BYTES};
    VkPipelineLayoutCreateInfo layout = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &push,
    };
    VK_TRY(vk->fn.vkCreatePipelineLayout(vk->device, &layout, NULL, &vk->pipeline_layout));
    return KILN_OK;
}

void kiln_vk_commands_release(kiln_vk *vk)
{
    for (int i = 0; i < vk->npipelines; i++) vk->fn.vkDestroyPipeline(vk->device, vk->pipelines[i].pipeline, NULL);
    free(vk->pipelines);
    for (int i = 0; i < KILN_VK_SHADER_COUNT; i++) vk->fn.vkDestroyShaderModule(vk->device, vk->modules[i], NULL);
    vk->fn.vkDestroyPipelineLayout(vk->device, vk->pipeline_layout, NULL);
    if (vk->timer) vk->fn.vkDestroyQueryPool(vk->device, vk->timer, NULL);
    for (int i = 0; i < 2; i++) vk->fn.vkDestroyFence(vk->device, vk->slots[i].fence, NULL);
    vk->fn.vkDestroyFence(vk->device, vk->replay_fence, NULL);
    vk->fn.vkDestroyCommandPool(vk->device, vk->command_pool, NULL);
}

static kiln_status submit_one(kiln_vk *vk, VkCommandBuffer cmd, VkFence fence)
{
    VkSubmitInfo submit = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &cmd,
    };
    VK_TRY(vk->fn.vkQueueSubmit(vk->queue, 1, &submit, fence));
    return KILN_OK;
}

kiln_status kiln_vk_submit(kiln_vk *vk)
{
    if (!vk->recording) return KILN_OK;
    kiln_vk_slot *slot = &vk->slots[vk->current];
    vk->recording = false;
    VK_TRY(vk->fn.vkEndCommandBuffer(slot->cmd));
    TRY(submit_one(vk, slot->cmd, slot->fence));
    slot->in_flight = true;
    vk->current ^= 1;
    return KILN_OK;
}

static kiln_status slot_wait(kiln_vk *vk, kiln_vk_slot *slot)
{
    if (!slot->in_flight) return KILN_OK;
    VK_TRY(vk->fn.vkWaitForFences(vk->device, 1, &slot->fence, VK_TRUE, UINT64_MAX));
    VK_TRY(vk->fn.vkResetFences(vk->device, 1, &slot->fence));
    slot->in_flight = false;
    return KILN_OK;
}

static kiln_status replay_wait(kiln_vk *vk)
{
    if (!vk->replay_in_flight) return KILN_OK;
    VK_TRY(vk->fn.vkWaitForFences(vk->device, 1, &vk->replay_fence, VK_TRUE, UINT64_MAX));
    VK_TRY(vk->fn.vkResetFences(vk->device, 1, &vk->replay_fence));
    vk->replay_in_flight = false;
    return KILN_OK;
}

kiln_status kiln_vk_finish(kiln_vk *vk)
{
    TRY(kiln_vk_submit(vk));
    /* the older submission first */
    TRY(slot_wait(vk, &vk->slots[vk->current]));
    TRY(slot_wait(vk, &vk->slots[vk->current ^ 1]));
    TRY(replay_wait(vk));
    vk->staging_head = 0;
    return KILN_OK;
}

/* A fresh command buffer's hazard state: nothing tracked, a barrier first. */
static void start_tracking(kiln_vk *vk)
{
    vk->batch = 0;
    vk->nreads = vk->nwrites = 0;
    vk->barrier_first = true;
    vk->f16_copy.valid = false;
}

kiln_status kiln_vk_recording(kiln_vk *vk, VkCommandBuffer *out)
{
    if (vk->record_cmd) {
        *out = vk->record_cmd;
        return KILN_OK;
    }
    if (vk->recording && vk->batch >= BATCH_COMMANDS) TRY(kiln_vk_submit(vk));
    kiln_vk_slot *slot = &vk->slots[vk->current];
    if (!vk->recording) {
        TRY(slot_wait(vk, slot));
        VK_TRY(vk->fn.vkResetCommandBuffer(slot->cmd, 0));
        VkCommandBufferBeginInfo begin = {
            .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
            .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
        };
        VK_TRY(vk->fn.vkBeginCommandBuffer(slot->cmd, &begin));
        vk->recording = true;
        /* Commands of earlier submissions may still be running: a barrier
         * orders this buffer's first command after all of them. */
        start_tracking(vk);
    }
    *out = slot->cmd;
    return KILN_OK;
}

/* Profiling: a timestamp before and after the ops between, each written once
 * every command before it has run (BOTTOM_OF_PIPE), so the difference is their
 * device time, without the submission and fence wait host timing adds. */
kiln_status kiln_vk_time_begin(kiln_backend *be)
{
    kiln_vk *vk = kiln_vk_of(be);
    if (!vk->timestamp_bits) return KILN_OK;
    if (vk->record_cmd) return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan: ops are timed only outside a recording");
    if (!vk->timer) {
        VkQueryPoolCreateInfo info = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = 2,
        };
        VK_TRY(vk->fn.vkCreateQueryPool(vk->device, &info, NULL, &vk->timer));
    }
    VkCommandBuffer cmd;
    TRY(kiln_vk_recording(vk, &cmd));
    vk->fn.vkCmdResetQueryPool(cmd, vk->timer, 0, 2);
    vk->fn.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, vk->timer, 0);
    return KILN_OK;
}

kiln_status kiln_vk_time_end(kiln_backend *be, double *seconds)
{
    kiln_vk *vk = kiln_vk_of(be);
    *seconds = -1.0;
    if (!vk->timestamp_bits) return kiln_vk_finish(vk);
    VkCommandBuffer cmd;
    TRY(kiln_vk_recording(vk, &cmd));
    vk->fn.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, vk->timer, 1);
    TRY(kiln_vk_finish(vk));
    uint64_t stamps[2];
    VK_TRY(vk->fn.vkGetQueryPoolResults(vk->device, vk->timer, 0, 2, sizeof stamps, stamps, sizeof stamps[0],
                                        VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
    uint64_t mask = vk->timestamp_bits >= 64 ? UINT64_MAX : ((uint64_t)1 << vk->timestamp_bits) - 1;
    *seconds = (double)((stamps[1] - stamps[0]) & mask) * vk->props.limits.timestampPeriod * 1e-9;
    return KILN_OK;
}

static bool overlaps_any(kiln_vk_range r, const kiln_vk_range *set, int n)
{
    for (int i = 0; i < n; i++)
        if (r.lo < set[i].hi && set[i].lo < r.hi) return true;
    return false;
}

void kiln_vk_order_access(kiln_vk *vk, VkCommandBuffer cmd, const kiln_vk_range *reads, int nreads,
                          kiln_vk_range write)
{
    bool writes = write.hi > write.lo;
    bool hazard = vk->barrier_first || vk->nreads + nreads > KILN_VK_TRACKED || vk->nwrites + 1 > KILN_VK_TRACKED;
    for (int i = 0; i < nreads && !hazard; i++) hazard = overlaps_any(reads[i], vk->writes, vk->nwrites);
    if (writes && !hazard)
        hazard = overlaps_any(write, vk->writes, vk->nwrites) || overlaps_any(write, vk->reads, vk->nreads);
    if (hazard) {
        /* One global barrier for compute and transfer alike: SD's ops are
         * few and large, so finer barriers would buy nothing. */
        VkMemoryBarrier barrier = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                             VK_ACCESS_TRANSFER_WRITE_BIT,
        };
        VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
        vk->fn.vkCmdPipelineBarrier(cmd, stages, stages, 0, 1, &barrier, 0, NULL, 0, NULL);
        vk->nreads = vk->nwrites = 0;
        vk->barrier_first = false;
    }
    for (int i = 0; i < nreads; i++) vk->reads[vk->nreads++] = reads[i];
    if (writes) vk->writes[vk->nwrites++] = write;
    if (writes && vk->f16_copy.valid &&
        (overlaps_any(write, &vk->f16_copy.of, 1) || overlaps_any(write, &vk->f16_copy.at, 1)))
        vk->f16_copy.valid = false;
    vk->batch++;
}

/* KILN_VULKAN_SHADER_DIR=DIR: a variant's SPIR-V is read from DIR/NAME.spv
 * where that file exists, else the embedded one is used. For trying shader
 * changes on a GPU with binaries built elsewhere; the driver checks the code
 * as it checks the embedded SPIR-V. */
static kiln_status spirv_override(kiln_vk_shader shader, uint32_t **code, size_t *bytes)
{
    *code = NULL;
    const char *dir = getenv("KILN_VULKAN_SHADER_DIR");
    if (!dir || !*dir) return KILN_OK;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s.spv", dir, kiln_vk_shaders[shader].name) >= (int)sizeof path)
        return kiln_fail(KILN_ERR_INVALID_ARG, "KILN_VULKAN_SHADER_DIR: path too long: %s", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return KILN_OK;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    uint32_t *words = size > 0 && size % 4 == 0 ? malloc((size_t)size) : NULL;
    bool ok = words && fseek(f, 0, SEEK_SET) == 0 && fread(words, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!ok || words[0] != 0x07230203u) {
        free(words);
        return kiln_fail(KILN_ERR_INVALID_ARG, "KILN_VULKAN_SHADER_DIR: %s is not a SPIR-V module", path);
    }
    *code = words;
    *bytes = (size_t)size;
    return KILN_OK;
}

static kiln_status module_create(kiln_vk *vk, kiln_vk_shader shader)
{
    uint32_t *override;
    size_t bytes;
    kiln_status st = spirv_override(shader, &override, &bytes);
    if (st != KILN_OK) return st;
    VkShaderModuleCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = override ? bytes : kiln_vk_shaders[shader].bytes,
        .pCode = override ? override : kiln_vk_shaders[shader].code,
    };
    VkResult r = vk->fn.vkCreateShaderModule(vk->device, &info, NULL, &vk->modules[shader]);
    free(override);
    if (r != VK_SUCCESS)
        return kiln_fail(KILN_ERR_BACKEND, "vulkan: the driver rejected shader %s (VkResult %d)",
                         kiln_vk_shaders[shader].name, (int)r);
    return KILN_OK;
}

/* The driver's statistics of a pipeline's first executable: its register
 * count ("Register Count", as NVIDIA's driver names it) into *registers,
 * and with KILN_VULKAN_PIPELINE_STATS=1 one line on stderr of every
 * statistic, "name=value" as the driver names them. */
static void read_pipeline_stats(kiln_vk *vk, kiln_vk_shader shader, const uint32_t spec[3], VkPipeline pipeline,
                                uint32_t *registers)
{
    *registers = 0;
    VkPipelineExecutableInfoKHR exe = {.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR, .pipeline = pipeline};
    VkPipelineExecutableStatisticKHR stats[32];
    uint32_t n = 32;
    for (uint32_t i = 0; i < n; i++)
        stats[i] = (VkPipelineExecutableStatisticKHR){.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR};
    VkResult r = vk->fn.vkGetPipelineExecutableStatisticsKHR(vk->device, &exe, &n, stats);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        if (vk->pipeline_stats)
            fprintf(stderr, "kiln vulkan pipeline %s: no statistics (%d)\n", kiln_vk_shaders[shader].name, (int)r);
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(stats[i].name, "Register Count") == 0 &&
            stats[i].format == VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR)
            *registers = (uint32_t)stats[i].value.u64;
    if (!vk->pipeline_stats) return;
    fprintf(stderr, "kiln vulkan pipeline %s [%u %u %u]:", kiln_vk_shaders[shader].name, spec[0], spec[1], spec[2]);
    for (uint32_t i = 0; i < n; i++) {
        const VkPipelineExecutableStatisticKHR *s = &stats[i];
        switch (s->format) {
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: fprintf(stderr, " %s=%u;", s->name, s->value.b32); break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
            fprintf(stderr, " %s=%lld;", s->name, (long long)s->value.i64);
            break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
            fprintf(stderr, " %s=%llu;", s->name, (unsigned long long)s->value.u64);
            break;
        default: fprintf(stderr, " %s=%g;", s->name, s->value.f64); break;
        }
    }
    fputc('\n', stderr);
}

/* The pipeline of a shader with these specialization constants, built on
 * first use; *out stays valid until the next pipeline is built. */
static kiln_status pipeline_get(kiln_vk *vk, kiln_vk_shader shader, const uint32_t spec[3], const kiln_vk_pipeline **out)
{
    for (int i = 0; i < vk->npipelines; i++) {
        const kiln_vk_pipeline *p = &vk->pipelines[i];
        if (p->shader == shader && p->spec[0] == spec[0] && p->spec[1] == spec[1] && p->spec[2] == spec[2]) {
            *out = p;
            return KILN_OK;
        }
    }
    if (!vk->modules[shader]) {
        kiln_status st = module_create(vk, shader);
        if (st != KILN_OK) return st;
    }
    if (vk->npipelines == vk->pipelines_cap) {
        int cap = vk->pipelines_cap ? vk->pipelines_cap * 2 : 32;
        kiln_vk_pipeline *grown = realloc(vk->pipelines, (size_t)cap * sizeof *grown);
        if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
        vk->pipelines = grown;
        vk->pipelines_cap = cap;
    }
    /* Constants a shader does not declare are ignored by the driver. */
    static const VkSpecializationMapEntry entries[3] = {{0, 0, 4}, {1, 4, 4}, {2, 8, 4}};
    VkSpecializationInfo spec_info = {
        .mapEntryCount = 3,
        .pMapEntries = entries,
        .dataSize = 3 * sizeof(uint32_t),
        .pData = spec,
    };
    VkComputePipelineCreateInfo info = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .flags = vk->pipeline_stats || vk->pipeline_registers ? VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR : 0,
        .stage =
            {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = vk->modules[shader],
                .pName = "main",
                .pSpecializationInfo = &spec_info,
            },
        .layout = vk->pipeline_layout,
    };
    VkPipeline pipeline;
    VkResult r = vk->fn.vkCreateComputePipelines(vk->device, VK_NULL_HANDLE, 1, &info, NULL, &pipeline);
    if (r != VK_SUCCESS) {
        kiln_vk_fail_result(r, __FILE__, __LINE__, "vkCreateComputePipelines");
        return kiln_fail_context(KILN_ERR_BACKEND, "vulkan: building shader %s", kiln_vk_shaders[shader].name);
    }
    uint32_t registers = 0;
    if (vk->pipeline_stats || vk->pipeline_registers) read_pipeline_stats(vk, shader, spec, pipeline, &registers);
    vk->pipelines[vk->npipelines] = (kiln_vk_pipeline){shader, {spec[0], spec[1], spec[2]}, pipeline, registers};
    *out = &vk->pipelines[vk->npipelines++];
    return KILN_OK;
}

kiln_status kiln_vk_pipeline_registers(kiln_vk *vk, kiln_vk_shader shader, const uint32_t spec[3], uint32_t *registers)
{
    const kiln_vk_pipeline *p;
    TRY(pipeline_get(vk, shader, spec, &p));
    *registers = p->registers;
    return KILN_OK;
}

kiln_vk_range kiln_vk_tensor_range(const kiln_tensor *t)
{
    VkDeviceAddress lo = t->buffer->address + t->offset;
    return (kiln_vk_range){lo, lo + kiln_tensor_nbytes(t)};
}

kiln_status kiln_vk_dispatch_record(kiln_vk *vk, const kiln_vk_dispatch *d)
{
    for (int i = 0; i < 3; i++)
        if (d->groups[i] == 0 || d->groups[i] > vk->props.limits.maxComputeWorkGroupCount[i])
            return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan: %s needs %u workgroups along %c; %s allows 1 to %u",
                             kiln_vk_shaders[d->shader].name, d->groups[i], "xyz"[i], vk->props.deviceName,
                             vk->props.limits.maxComputeWorkGroupCount[i]);
    const kiln_vk_pipeline *built;
    TRY(pipeline_get(vk, d->shader, d->spec, &built));
    VkPipeline pipeline = built->pipeline;
    VkCommandBuffer cmd;
    TRY(kiln_vk_recording(vk, &cmd));
    kiln_vk_range reads[KILN_VK_DISPATCH_READS];
    int nreads = 0;
    for (int i = 0; i < KILN_VK_DISPATCH_READS; i++)
        if (d->reads[i]) reads[nreads++] = kiln_vk_tensor_range(d->reads[i]);
    kiln_vk_order_access(vk, cmd, reads, nreads, kiln_vk_tensor_range(d->write));
    vk->fn.vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
    vk->fn.vkCmdPushConstants(cmd, vk->pipeline_layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, d->push_bytes, d->push);
    vk->fn.vkCmdDispatch(cmd, d->groups[0], d->groups[1], d->groups[2]);
    return KILN_OK;
}

struct kiln_recording {
    VkCommandBuffer cmd;
};

kiln_status kiln_vk_record_begin(kiln_backend *be)
{
    kiln_vk *vk = kiln_vk_of(be);
    TRY(kiln_vk_submit(vk)); /* what came before is not part of the recording */
    VkCommandBufferAllocateInfo alloc = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vk->command_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VkCommandBuffer cmd;
    VK_TRY(vk->fn.vkAllocateCommandBuffers(vk->device, &alloc, &cmd));
    VkCommandBufferBeginInfo begin = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VkResult r = vk->fn.vkBeginCommandBuffer(cmd, &begin);
    if (r != VK_SUCCESS) {
        vk->fn.vkFreeCommandBuffers(vk->device, vk->command_pool, 1, &cmd);
        return kiln_vk_fail_result(r, __FILE__, __LINE__, "vkBeginCommandBuffer");
    }
    vk->record_cmd = cmd;
    start_tracking(vk);
    return KILN_OK;
}

kiln_status kiln_vk_record_end(kiln_backend *be, kiln_recording **out)
{
    kiln_vk *vk = kiln_vk_of(be);
    VkCommandBuffer cmd = vk->record_cmd;
    vk->record_cmd = VK_NULL_HANDLE;
    VkResult r = vk->fn.vkEndCommandBuffer(cmd);
    kiln_recording *rec = out && r == VK_SUCCESS ? calloc(1, sizeof *rec) : NULL;
    if (!rec) {
        vk->fn.vkFreeCommandBuffers(vk->device, vk->command_pool, 1, &cmd);
        if (!out) return KILN_OK; /* discarding after a failed op: keep its message */
        *out = NULL;
        if (r != VK_SUCCESS) return kiln_vk_fail_result(r, __FILE__, __LINE__, "vkEndCommandBuffer");
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    }
    rec->cmd = cmd;
    *out = rec;
    return KILN_OK;
}

kiln_status kiln_vk_replay(kiln_backend *be, kiln_recording *rec)
{
    kiln_vk *vk = kiln_vk_of(be);
    TRY(kiln_vk_submit(vk)); /* this step's uploads go first */
    TRY(replay_wait(vk));    /* one replay in flight at a time: the buffer is not simultaneous-use */
    TRY(submit_one(vk, rec->cmd, vk->replay_fence));
    vk->replay_in_flight = true;
    return KILN_OK;
}

void kiln_vk_recording_free(kiln_backend *be, kiln_recording *rec)
{
    if (!rec) return;
    kiln_vk *vk = kiln_vk_of(be);
    (void)replay_wait(vk); /* the buffer may be executing */
    vk->fn.vkFreeCommandBuffers(vk->device, vk->command_pool, 1, &rec->cmd);
    free(rec);
}
