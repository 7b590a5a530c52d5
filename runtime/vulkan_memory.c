/* Device memory: one arena of large blocks, handed out in pieces, and a
 * host-visible staging ring through which every upload and download goes.
 *
 * Blocks are few and large because drivers limit the number of allocations
 * and each one is slow; a checkpoint's thousand weights and the activation
 * arena are pieces of them (first fit over a sorted free list). */
#include "vulkan_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define PIECE_ALIGN 256                /* >= every device's minStorageBufferOffsetAlignment */
#define BLOCK_BYTES ((VkDeviceSize)256 << 20)
#define STAGING_BYTES ((VkDeviceSize)64 << 20)

static VkDeviceSize round_up(VkDeviceSize v, VkDeviceSize to) { return (v + to - 1) / to * to; }

/* Among the allowed types with `need`, the one on the largest heap, or with
 * `want` as well when there is one. UINT32_MAX if none. */
static uint32_t memory_type_pick(const VkPhysicalDeviceMemoryProperties *mp, uint32_t allowed,
                                 VkMemoryPropertyFlags need, VkMemoryPropertyFlags want)
{
    uint32_t best = UINT32_MAX;
    VkDeviceSize best_heap = 0;
    bool best_wanted = false;
    for (uint32_t i = 0; i < mp->memoryTypeCount; i++) {
        VkMemoryPropertyFlags flags = mp->memoryTypes[i].propertyFlags;
        if (!(allowed & (1u << i)) || (flags & need) != need) continue;
        bool wanted = (flags & want) == want;
        VkDeviceSize heap = mp->memoryHeaps[mp->memoryTypes[i].heapIndex].size;
        if (best == UINT32_MAX || (wanted && !best_wanted) || (wanted == best_wanted && heap > best_heap)) {
            best = i;
            best_heap = heap;
            best_wanted = wanted;
        }
    }
    return best;
}

static kiln_status oom(kiln_vk *vk, size_t bytes, const char *why)
{
    return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: cannot allocate %zu bytes (%.1f MiB) of device memory on %s: %s",
                     bytes, (double)bytes / (1 << 20), vk->props.deviceName, why);
}

/* A buffer over a fresh allocation of `size` bytes with the given memory
 * properties; `asked` is what the caller wanted, for the error message. */
static kiln_status allocation_create(kiln_vk *vk, VkDeviceSize size, size_t asked, VkBufferUsageFlags usage,
                                     VkMemoryPropertyFlags need, VkMemoryPropertyFlags want, VkBuffer *buffer,
                                     VkDeviceMemory *memory)
{
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = usage,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VK_TRY(vk->fn.vkCreateBuffer(vk->device, &bi, NULL, buffer));
    VkMemoryRequirements req;
    vk->fn.vkGetBufferMemoryRequirements(vk->device, *buffer, &req);
    uint32_t type = memory_type_pick(&vk->memory_props, req.memoryTypeBits, need, want);
    if (type == UINT32_MAX) {
        vk->fn.vkDestroyBuffer(vk->device, *buffer, NULL);
        return kiln_fail(KILN_ERR_UNSUPPORTED, "vulkan: %s has no memory type for %s buffers", vk->props.deviceName,
                         need & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT ? "staging" : "device-local");
    }
    VkMemoryAllocateFlagsInfo flags = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
        .flags = usage & VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT ? VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT : 0,
    };
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .pNext = &flags,
        .allocationSize = req.size,
        .memoryTypeIndex = type,
    };
    VkResult r = vk->fn.vkAllocateMemory(vk->device, &ai, NULL, memory);
    if (r == VK_SUCCESS) r = vk->fn.vkBindBufferMemory(vk->device, *buffer, *memory, 0);
    else *memory = VK_NULL_HANDLE;
    if (r != VK_SUCCESS) {
        vk->fn.vkDestroyBuffer(vk->device, *buffer, NULL);
        vk->fn.vkFreeMemory(vk->device, *memory, NULL);
        *buffer = VK_NULL_HANDLE;
        *memory = VK_NULL_HANDLE;
        if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
            return oom(vk, asked, r == VK_ERROR_OUT_OF_DEVICE_MEMORY ? "VK_ERROR_OUT_OF_DEVICE_MEMORY"
                                                                     : "VK_ERROR_OUT_OF_HOST_MEMORY");
        return kiln_vk_fail_result(r, __FILE__, __LINE__, "vkAllocateMemory/vkBindBufferMemory");
    }
    return KILN_OK;
}

static void block_destroy(kiln_vk *vk, kiln_vk_block *b)
{
    vk->fn.vkDestroyBuffer(vk->device, b->buffer, NULL);
    vk->fn.vkFreeMemory(vk->device, b->memory, NULL);
    free(b->free);
    free(b);
}

static kiln_status block_create(kiln_vk *vk, VkDeviceSize size, size_t asked, kiln_vk_block **out)
{
    kiln_vk_block *b = calloc(1, sizeof *b);
    kiln_vk_span *spans = malloc(8 * sizeof *spans);
    if (!b || !spans) {
        free(b);
        free(spans);
        return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
    }
    VkBufferUsageFlags usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                               VK_BUFFER_USAGE_TRANSFER_DST_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT;
    kiln_status st = allocation_create(vk, size, asked, usage, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, &b->buffer,
                                       &b->memory);
    if (st != KILN_OK) {
        free(b);
        free(spans);
        return st;
    }
    VkBufferDeviceAddressInfo ai = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, .buffer = b->buffer};
    b->address = vk->fn.vkGetBufferDeviceAddress(vk->device, &ai);
    b->size = size;
    b->free = spans;
    b->cap = 8;
    b->nfree = 1;
    b->free[0] = (kiln_vk_span){0, size};
    *out = b;
    return KILN_OK;
}

/* First fit; false if no free span is large enough. */
static bool block_take(kiln_vk_block *b, VkDeviceSize size, VkDeviceSize *offset)
{
    for (int i = 0; i < b->nfree; i++) {
        if (b->free[i].size < size) continue;
        *offset = b->free[i].offset;
        b->free[i].offset += size;
        b->free[i].size -= size;
        if (b->free[i].size == 0) {
            memmove(&b->free[i], &b->free[i + 1], (size_t)(b->nfree - i - 1) * sizeof *b->free);
            b->nfree--;
        }
        b->used += size;
        return true;
    }
    return false;
}

/* Returns a piece, merging it with free neighbours. */
static kiln_status block_give_back(kiln_vk_block *b, VkDeviceSize offset, VkDeviceSize size)
{
    int i = 0;
    while (i < b->nfree && b->free[i].offset < offset) i++;
    bool joins_prev = i > 0 && b->free[i - 1].offset + b->free[i - 1].size == offset;
    bool joins_next = i < b->nfree && offset + size == b->free[i].offset;
    b->used -= size;
    if (joins_prev && joins_next) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], (size_t)(b->nfree - i - 1) * sizeof *b->free);
        b->nfree--;
    } else if (joins_prev) {
        b->free[i - 1].size += size;
    } else if (joins_next) {
        b->free[i].offset = offset;
        b->free[i].size += size;
    } else {
        if (b->nfree == b->cap) {
            kiln_vk_span *grown = realloc(b->free, (size_t)b->cap * 2 * sizeof *grown);
            if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
            b->free = grown;
            b->cap *= 2;
        }
        memmove(&b->free[i + 1], &b->free[i], (size_t)(b->nfree - i) * sizeof *b->free);
        b->free[i] = (kiln_vk_span){offset, size};
        b->nfree++;
    }
    return KILN_OK;
}

static kiln_status blocks_append(kiln_vk *vk, kiln_vk_block *b)
{
    if (vk->nblocks == vk->blocks_cap) {
        int cap = vk->blocks_cap ? vk->blocks_cap * 2 : 8;
        kiln_vk_block **grown = realloc(vk->blocks, (size_t)cap * sizeof *grown);
        if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
        vk->blocks = grown;
        vk->blocks_cap = cap;
    }
    vk->blocks[vk->nblocks++] = b;
    return KILN_OK;
}

kiln_status kiln_vk_buffer_alloc(kiln_backend *be, size_t bytes, kiln_buffer **out)
{
    kiln_vk *vk = kiln_vk_of(be);
    *out = NULL;
    if (bytes > vk->max_allocation) {
        char why[128];
        snprintf(why, sizeof why, "larger than its largest allocation (%llu bytes)",
                 (unsigned long long)vk->max_allocation);
        return oom(vk, bytes, why);
    }
    VkDeviceSize size = round_up(bytes ? bytes : 1, PIECE_ALIGN);
    kiln_buffer *buf = calloc(1, sizeof *buf);
    if (!buf) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");

    kiln_vk_block *block = NULL;
    VkDeviceSize offset = 0;
    for (int i = 0; i < vk->nblocks && !block; i++)
        if (block_take(vk->blocks[i], size, &offset)) block = vk->blocks[i];
    if (!block) {
        /* Small pieces share a standard block; a large one gets its own. */
        VkDeviceSize block_size = size > BLOCK_BYTES / 2 ? size : BLOCK_BYTES;
        if (block_size > vk->max_allocation) block_size = size;
        kiln_status st = block_create(vk, block_size, bytes, &block);
        if (st == KILN_ERR_OUT_OF_MEMORY && block_size > size) st = block_create(vk, size, bytes, &block);
        if (st == KILN_OK && (st = blocks_append(vk, block)) != KILN_OK) block_destroy(vk, block);
        if (st != KILN_OK) {
            free(buf);
            return st;
        }
        block_take(block, size, &offset);
    }
    buf->block = block;
    buf->offset = offset;
    buf->size = size;
    buf->address = block->address + offset;
    *out = buf;
    return KILN_OK;
}

void kiln_vk_buffer_free(kiln_backend *be, kiln_buffer *buf)
{
    if (!buf) return;
    kiln_vk *vk = kiln_vk_of(be);
    kiln_vk_block *b = buf->block;
    /* On failure the piece stays taken: a leak inside the block, no worse. */
    (void)block_give_back(b, buf->offset, buf->size);
    free(buf);
    /* An empty block goes back to the driver once queued work is done with
     * it; the last one is kept for the next allocations. */
    if (b->used != 0 || vk->nblocks == 1 || kiln_vk_finish(vk) != KILN_OK) return;
    for (int i = 0; i < vk->nblocks; i++)
        if (vk->blocks[i] == b) {
            vk->blocks[i] = vk->blocks[--vk->nblocks];
            block_destroy(vk, b);
            break;
        }
}

kiln_status kiln_vk_staging_init(kiln_vk *vk)
{
    vk->staging_size = STAGING_BYTES < vk->max_allocation ? STAGING_BYTES : vk->max_allocation;
    TRY(allocation_create(vk, vk->staging_size, (size_t)vk->staging_size,
                          VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                          VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                          VK_MEMORY_PROPERTY_HOST_CACHED_BIT, &vk->staging, &vk->staging_memory));
    void *map;
    VK_TRY(vk->fn.vkMapMemory(vk->device, vk->staging_memory, 0, VK_WHOLE_SIZE, 0, &map));
    vk->staging_map = map;
    vk->staging_head = 0;
    return KILN_OK;
}

kiln_status kiln_vk_scratch(kiln_backend *be, size_t bytes, kiln_tensor *out)
{
    kiln_vk *vk = kiln_vk_of(be);
    kiln_buffer *cur = vk->nscratch ? vk->scratch[vk->nscratch - 1] : NULL;
    if (!cur || cur->size < bytes) {
        /* The outgrown buffer stays: commands recorded for replay hold its
         * address. Growth by a quarter keeps such leftovers few. */
        kiln_buffer **grown = realloc(vk->scratch, (size_t)(vk->nscratch + 1) * sizeof *grown);
        if (!grown) return kiln_fail(KILN_ERR_OUT_OF_MEMORY, "vulkan: out of host memory");
        vk->scratch = grown;
        TRY(kiln_vk_buffer_alloc(be, bytes + bytes / 4, &cur));
        vk->scratch[vk->nscratch++] = cur;
    }
    *out = (kiln_tensor){.dtype = KILN_F32, .ndim = 1, .shape = {(int64_t)(bytes / 4)}, .buffer = cur};
    return KILN_OK;
}

void kiln_vk_memory_release(kiln_vk *vk)
{
    for (int i = 0; i < vk->nscratch; i++) free(vk->scratch[i]); /* their blocks go below */
    free(vk->scratch);
    vk->scratch = NULL;
    vk->nscratch = 0;
    for (int i = 0; i < vk->nblocks; i++) block_destroy(vk, vk->blocks[i]);
    free(vk->blocks);
    vk->blocks = NULL;
    vk->nblocks = 0;
    vk->fn.vkDestroyBuffer(vk->device, vk->staging, NULL);
    vk->fn.vkFreeMemory(vk->device, vk->staging_memory, NULL);
}

/* `bytes` of staging space that stays untouched until submitted work is
 * done; waits for the device when the ring is full. */
static kiln_status staging_reserve(kiln_vk *vk, VkDeviceSize bytes, VkDeviceSize *at)
{
    VkDeviceSize head = round_up(vk->staging_head, 16);
    if (head + bytes > vk->staging_size) {
        TRY(kiln_vk_finish(vk));
        head = 0;
    }
    *at = head;
    vk->staging_head = head + bytes;
    return KILN_OK;
}

static kiln_status check_span(const char *what, const kiln_tensor *t, size_t bytes)
{
    if (!t->buffer) return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan %s: the tensor has no buffer", what);
    if (t->offset > t->buffer->size || bytes > t->buffer->size - t->offset)
        return kiln_fail(KILN_ERR_INVALID_ARG, "vulkan %s: %zu bytes at offset %zu overrun a %llu-byte buffer", what,
                         bytes, t->offset, (unsigned long long)t->buffer->size);
    return KILN_OK;
}

kiln_status kiln_vk_upload(kiln_backend *be, const kiln_tensor *dst, const void *src, size_t bytes)
{
    kiln_vk *vk = kiln_vk_of(be);
    TRY(check_span("upload", dst, bytes));
    const kiln_buffer *buf = dst->buffer;
    VkDeviceSize at = buf->offset + dst->offset; /* in the block */
    const unsigned char *from = src;
    while (bytes > 0) {
        VkDeviceSize chunk = bytes < vk->staging_size ? bytes : vk->staging_size, staged;
        TRY(staging_reserve(vk, chunk, &staged));
        memcpy(vk->staging_map + staged, from, chunk);
        VkCommandBuffer cmd;
        TRY(kiln_vk_recording(vk, &cmd));
        kiln_vk_range written = {buf->block->address + at, buf->block->address + at + chunk};
        kiln_vk_order_access(vk, cmd, NULL, 0, written);
        VkBufferCopy region = {.srcOffset = staged, .dstOffset = at, .size = chunk};
        vk->fn.vkCmdCopyBuffer(cmd, vk->staging, buf->block->buffer, 1, &region);
        from += chunk;
        at += chunk;
        bytes -= chunk;
    }
    return KILN_OK;
}

kiln_status kiln_vk_download(kiln_backend *be, const kiln_tensor *src, void *dst, size_t bytes)
{
    kiln_vk *vk = kiln_vk_of(be);
    TRY(check_span("download", src, bytes));
    const kiln_buffer *buf = src->buffer;
    VkDeviceSize at = buf->offset + src->offset;
    unsigned char *to = dst;
    do {
        VkDeviceSize chunk = bytes < vk->staging_size ? bytes : vk->staging_size, staged;
        TRY(staging_reserve(vk, chunk, &staged));
        VkCommandBuffer cmd;
        TRY(kiln_vk_recording(vk, &cmd));
        kiln_vk_range read = {buf->block->address + at, buf->block->address + at + chunk};
        kiln_vk_order_access(vk, cmd, &read, 1, (kiln_vk_range){0, 0});
        VkBufferCopy region = {.srcOffset = at, .dstOffset = staged, .size = chunk};
        if (chunk) vk->fn.vkCmdCopyBuffer(cmd, buf->block->buffer, vk->staging, 1, &region);
        VkMemoryBarrier to_host = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
        };
        vk->fn.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host,
                                    0, NULL, 0, NULL);
        TRY(kiln_vk_finish(vk));
        memcpy(to, vk->staging_map + staged, chunk);
        to += chunk;
        at += chunk;
        bytes -= chunk;
    } while (bytes > 0);
    return KILN_OK;
}

kiln_status kiln_vk_weights_place(kiln_backend *be, const void *host, size_t bytes, kiln_buffer **out)
{
    TRY(kiln_vk_buffer_alloc(be, bytes, out));
    kiln_tensor whole = {.dtype = KILN_U8, .ndim = 1, .shape = {(int64_t)bytes}, .buffer = *out};
    kiln_status st = kiln_vk_upload(be, &whole, host, bytes);
    if (st != KILN_OK) {
        kiln_vk_buffer_free(be, *out);
        *out = NULL;
    }
    return st;
}
