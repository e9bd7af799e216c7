// Throughput kernel for the compute probe: each element seeds eight
// independent chains of fused multiply-adds (so the FMA units, not latency,
// bound the rate) and the chains' sum is written back, so nothing is elided.
// Operations per element and iteration: 8 chains x 2 flops.
#version 450
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) buffer Data { float values[]; } data;

layout(push_constant) uniform Parameters {
  uint first;       // first element of the window
  uint count;       // elements
  uint iterations;
} p;

void main() {
  uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
  for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
    float x = data.values[p.first + i];
    float a0 = x, a1 = x + 1.0, a2 = x + 2.0, a3 = x + 3.0;
    float a4 = x + 4.0, a5 = x + 5.0, a6 = x + 6.0, a7 = x + 7.0;
    for (uint k = 0u; k < p.iterations; ++k) {
      a0 = fma(a0, 0.9999, 0.0001);
      a1 = fma(a1, 0.9999, 0.0001);
      a2 = fma(a2, 0.9999, 0.0001);
      a3 = fma(a3, 0.9999, 0.0001);
      a4 = fma(a4, 0.9999, 0.0001);
      a5 = fma(a5, 0.9999, 0.0001);
      a6 = fma(a6, 0.9999, 0.0001);
      a7 = fma(a7, 0.9999, 0.0001);
    }
    data.values[p.first + i] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
  }
}
