// The FMA kernel's Metal Shading Language source (fma_kernel.metal, embedded
// at configure time) and its entry point.
#pragma once

namespace exogpu::metal {

extern const char* const kFmaKernelSource;
inline constexpr const char* kFmaKernelName = "exogpu_fma";
// Floating-point operations per element and iteration (8 chains of one FMA).
inline constexpr double kFmaFlopsPerElementIteration = 16.0;

}  // namespace exogpu::metal
