// Copies byte_count bytes from src[src_byte] to dst[dst_byte] (byte offsets
// into the bound windows), any alignment. Each invocation writes one
// destination word; partial words at the ends use atomics so that the bytes
// around the range stay intact.
#version 450
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) buffer Destination { uint words[]; } dst;
layout(std430, set = 0, binding = 1) readonly buffer Source { uint words[]; } src;

layout(push_constant) uniform Parameters {
  uint dst_byte;
  uint src_byte;
  uint byte_count;
} p;

uint source_byte(uint i) {
  return (src.words[i / 4u] >> ((i % 4u) * 8u)) & 0xFFu;
}

void main() {
  uint end_byte = p.dst_byte + p.byte_count;
  uint first_word = p.dst_byte / 4u;
  uint end_word = (end_byte + 3u) / 4u;
  bool same_phase = (p.dst_byte % 4u) == (p.src_byte % 4u);
  uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
  for (uint w = first_word + gl_GlobalInvocationID.x; w < end_word; w += stride) {
    uint lo = max(p.dst_byte, w * 4u);
    uint hi = min(end_byte, w * 4u + 4u);
    bool whole = lo == w * 4u && hi == w * 4u + 4u;
    if (whole && same_phase) {
      dst.words[w] = src.words[(w * 4u - p.dst_byte + p.src_byte) / 4u];
      continue;
    }
    uint value = 0u;
    uint mask = 0u;
    for (uint b = lo; b < hi; ++b) {
      uint shift = (b - w * 4u) * 8u;
      value |= source_byte(b - p.dst_byte + p.src_byte) << shift;
      mask |= 0xFFu << shift;
    }
    if (whole) {
      dst.words[w] = value;
    } else {
      atomicAnd(dst.words[w], ~mask);
      atomicOr(dst.words[w], value & mask);
    }
  }
}
