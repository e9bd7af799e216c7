// Matrix multiplication with DirectML on a DirectML device's stream: the
// compute probe's kernel on this backend (a model's layers are matrix
// multiplies, so their rate is the one worth knowing), and an entry point for
// tests and benchmarks. Needs no Windows header.
#pragma once

#include <cstddef>
#include <cstdint>

#include "exogpu/device.hpp"

namespace exogpu::directml {

enum class GemmType { float32, float16 };

struct GemmShape {
  std::uint32_t m = 0;  // rows of A and of the output
  std::uint32_t k = 0;  // columns of A, rows of B
  std::uint32_t n = 0;  // columns of B and of the output
  GemmType type = GemmType::float32;
};

// Enqueues `repeats` times out = A x B on `stream`, a stream of a DirectML
// device, for row-major matrices packed at the given byte offsets (multiples
// of 16, as DirectML requires) of buffers on that device. Returns the
// floating-point operations enqueued, 2 m n k per repeat. Throws
// InvalidArgument (enqueueing nothing) for another backend's stream or
// buffers, a zero dimension, a misaligned offset, a matrix that overruns its
// buffer, or float16 where the adapter lacks it.
double enqueue_gemm(Stream& stream, const GemmShape& shape, const Buffer& a, std::size_t a_offset,
                    const Buffer& b, std::size_t b_offset, const Buffer& out,
                    std::size_t out_offset, std::uint32_t repeats = 1);

}  // namespace exogpu::directml
