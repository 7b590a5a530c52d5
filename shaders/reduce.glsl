// Workgroup-wide sum or max of one value per invocation, through shared
// memory. The including shader defines WG_SIZE, its local_size_x (a power of
// two), and calls these from uniform control flow.
shared float reduce_scratch[WG_SIZE];

float workgroup_reduce(float v, bool take_max)
{
    uint t = gl_LocalInvocationID.x;
    reduce_scratch[t] = v;
    barrier();
    for (uint stride = WG_SIZE / 2; stride > 0; stride >>= 1) {
        if (t < stride) {
            float other = reduce_scratch[t + stride];
            reduce_scratch[t] = take_max ? max(reduce_scratch[t], other) : reduce_scratch[t] + other;
        }
        barrier();
    }
    float result = reduce_scratch[0];
    barrier(); // everyone has read the result before the scratch is reused
    return result;
}

float workgroup_sum(float v) { return workgroup_reduce(v, false); }
float workgroup_max(float v) { return workgroup_reduce(v, true); }
