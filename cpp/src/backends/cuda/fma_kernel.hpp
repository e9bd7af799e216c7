// The compute probe's FMA kernel (fma_kernel.ptx), embedded at configure time.
#pragma once

namespace exogpu::cuda {
extern const char* const kFmaKernelPtx;
inline constexpr const char* kFmaKernelName = "exogpu_fma";
inline constexpr unsigned kFmaBlockSize = 256;
}  // namespace exogpu::cuda
