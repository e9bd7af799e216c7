// Throughput kernel for the compute probe, in the Metal Shading Language:
// each element seeds eight independent chains of fused multiply-adds (so the
// FMA units, not latency, bound the rate) and writes back their sum, so
// nothing is elided. Operations per element and iteration: 8 chains x 2 flops.
// Embedded in the library and compiled at run time (newLibraryWithSource:).
#include <metal_stdlib>
using namespace metal;

kernel void exogpu_fma(device float* data [[buffer(0)]],
                       constant uint& count [[buffer(1)]],
                       constant uint& iterations [[buffer(2)]],
                       uint i [[thread_position_in_grid]]) {
  if (i >= count) return;
  const float x = data[i];
  float a0 = x, a1 = x + 1.0f, a2 = x + 2.0f, a3 = x + 3.0f;
  float a4 = x + 4.0f, a5 = x + 5.0f, a6 = x + 6.0f, a7 = x + 7.0f;
  for (uint k = 0; k < iterations; ++k) {
    a0 = fma(a0, 0.9999f, 0.0001f);
    a1 = fma(a1, 0.9999f, 0.0001f);
    a2 = fma(a2, 0.9999f, 0.0001f);
    a3 = fma(a3, 0.9999f, 0.0001f);
    a4 = fma(a4, 0.9999f, 0.0001f);
    a5 = fma(a5, 0.9999f, 0.0001f);
    a6 = fma(a6, 0.9999f, 0.0001f);
    a7 = fma(a7, 0.9999f, 0.0001f);
  }
  data[i] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}
