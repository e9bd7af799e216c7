// Names for the Metal object types the backend holds. Inside exogpu's
// classes `id` is also the name of Device::id(), which hides the Objective-C
// type `id` (and `nil`, which GNU's runtime spells `(id)0`), so the backend
// spells these types through aliases declared out here, and writes nullptr.
#pragma once

#include "metal_subset.h"

namespace exogpu::metal {

using DeviceRef = id<MTLDevice>;
using BufferRef = id<MTLBuffer>;
using QueueRef = id<MTLCommandQueue>;
using CommandBufferRef = id<MTLCommandBuffer>;
using SharedEventRef = id<MTLSharedEvent>;
using LibraryRef = id<MTLLibrary>;
using FunctionRef = id<MTLFunction>;
using PipelineRef = id<MTLComputePipelineState>;
using BlitEncoderRef = id<MTLBlitCommandEncoder>;
using ComputeEncoderRef = id<MTLComputeCommandEncoder>;

}  // namespace exogpu::metal
