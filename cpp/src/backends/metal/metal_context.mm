#include "backends/metal/metal_context.hpp"

#include "backends/metal/fma_kernel.hpp"
#include "exogpu/error.hpp"

namespace exogpu::metal {

std::string describe(NSError* error) {
  if (error == nullptr) return "unknown error";
  std::string text;
  with_autorelease_pool([&] { text = utf8([error localizedDescription]); });
  return text.empty() ? "unknown error" : text;
}

Retained<BufferRef> Context::new_buffer(std::size_t n, bool shared) const {
  const MTLResourceOptions options =
      shared || unified_ ? MTLResourceStorageModeShared : MTLResourceStorageModePrivate;
  auto buffer = Retained<BufferRef>::adopt([device_.get() newBufferWithLength:n
                                                                           options:options]);
  if (!buffer) {
    const std::uint64_t in_use = [device_.get() currentAllocatedSize];
    const std::uint64_t limit = [device_.get() recommendedMaxWorkingSetSize];
    throw OutOfMemory(id_ + ": cannot allocate " + std::to_string(n) +
                      " bytes (newBufferWithLength returned nil; " + std::to_string(in_use) +
                      " of " + std::to_string(limit) + " bytes in use, largest buffer " +
                      std::to_string([device_.get() maxBufferLength]) + " bytes)");
  }
  return buffer;
}

PipelineRef Context::fma_pipeline() {
  std::lock_guard lock(fma_mutex_);
  if (fma_) return fma_.get();
  std::string failure;
  with_autorelease_pool([&] {
    NSError* error = nullptr;
    auto library = Retained<LibraryRef>::adopt(
        [device_.get() newLibraryWithSource:[NSString stringWithUTF8String:kFmaKernelSource]
                                    options:nullptr
                                      error:&error]);
    if (!library) {
      failure = "newLibraryWithSource failed: " + describe(error);
      return;
    }
    auto function = Retained<FunctionRef>::adopt(
        [library.get() newFunctionWithName:[NSString stringWithUTF8String:kFmaKernelName]]);
    if (!function) {
      failure = std::string("the compiled library has no function ") + kFmaKernelName;
      return;
    }
    error = nullptr;
    fma_ = Retained<PipelineRef>::adopt(
        [device_.get() newComputePipelineStateWithFunction:function.get() error:&error]);
    if (!fma_) failure = "newComputePipelineStateWithFunction failed: " + describe(error);
  });
  if (!failure.empty()) throw DeviceError(id_ + ": FMA kernel: " + failure);
  return fma_.get();
}

}  // namespace exogpu::metal
