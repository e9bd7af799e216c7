// Fills bytes [first_byte, first_byte + byte_count) of the bound window with
// one byte value. Whole words are stored; the (at most two) partial words at
// the ends are changed with atomics so that neighbouring bytes stay intact.
#version 450
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) buffer Destination { uint words[]; } dst;

layout(push_constant) uniform Parameters {
  uint first_byte;
  uint byte_count;
  uint value;  // the byte replicated into all four lanes
} p;

void main() {
  uint end_byte = p.first_byte + p.byte_count;
  uint first_word = p.first_byte / 4u;
  uint end_word = (end_byte + 3u) / 4u;
  uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
  for (uint w = first_word + gl_GlobalInvocationID.x; w < end_word; w += stride) {
    uint lo = max(p.first_byte, w * 4u);
    uint hi = min(end_byte, w * 4u + 4u);
    if (lo == w * 4u && hi == w * 4u + 4u) {
      dst.words[w] = p.value;
    } else {
      uint mask = 0u;
      for (uint b = lo; b < hi; ++b) mask |= 0xFFu << ((b - w * 4u) * 8u);
      atomicAnd(dst.words[w], ~mask);
      atomicOr(dst.words[w], p.value & mask);
    }
  }
}
