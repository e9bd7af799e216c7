#include "vk_pipelines.hpp"

#include <span>

#include "exogpu/error.hpp"

namespace exogpu::vulkan {
namespace {

// SPIR-V words emitted by glslc -mfmt=c at build time.
constexpr std::uint32_t kFillSpirv[] =
#include "fill.spv.inc"
    ;
constexpr std::uint32_t kCopySpirv[] =
#include "copy.spv.inc"
    ;
constexpr std::uint32_t kFmaSpirv[] =
#include "fma.spv.inc"
    ;

std::span<const std::uint32_t> spirv(Kernel kernel) {
  switch (kernel) {
    case Kernel::fill:
      return kFillSpirv;
    case Kernel::copy:
      return kCopySpirv;
    case Kernel::fma:
      return kFmaSpirv;
  }
  return {};
}

}  // namespace

Pipelines::Pipelines(std::shared_ptr<DeviceContext> context) : context_(std::move(context)) {
  const DeviceFunctions& fn = context_->fn();
  VkDevice device = context_->handle();
  try {
    std::array<VkDescriptorSetLayoutBinding, 2> bindings{};
    for (std::uint32_t i = 0; i < bindings.size(); ++i) {
      bindings[i].binding = i;
      bindings[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
      bindings[i].descriptorCount = 1;
      bindings[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    }
    VkDescriptorSetLayoutCreateInfo set_info{};
    set_info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
    set_info.bindingCount = static_cast<std::uint32_t>(bindings.size());
    set_info.pBindings = bindings.data();
    context_->check(fn.vkCreateDescriptorSetLayout(device, &set_info, nullptr, &set_layout_),
                    "vkCreateDescriptorSetLayout");
    VkPushConstantRange push{};
    push.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
    push.size = 16;
    VkPipelineLayoutCreateInfo layout_info{};
    layout_info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
    layout_info.setLayoutCount = 1;
    layout_info.pSetLayouts = &set_layout_;
    layout_info.pushConstantRangeCount = 1;
    layout_info.pPushConstantRanges = &push;
    context_->check(fn.vkCreatePipelineLayout(device, &layout_info, nullptr, &layout_),
                    "vkCreatePipelineLayout");
    VkPipelineCacheCreateInfo cache_info{};
    cache_info.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO;
    context_->check(fn.vkCreatePipelineCache(device, &cache_info, nullptr, &cache_),
                    "vkCreatePipelineCache");
  } catch (...) {
    destroy_handles();
    throw;
  }
}

Pipelines::~Pipelines() { destroy_handles(); }

void Pipelines::destroy_handles() noexcept {
  const DeviceFunctions& fn = context_->fn();
  VkDevice device = context_->handle();
  for (VkPipeline& p : pipelines_) {
    if (p != VK_NULL_HANDLE) fn.vkDestroyPipeline(device, p, nullptr);
    p = VK_NULL_HANDLE;
  }
  if (cache_ != VK_NULL_HANDLE) fn.vkDestroyPipelineCache(device, cache_, nullptr);
  if (layout_ != VK_NULL_HANDLE) fn.vkDestroyPipelineLayout(device, layout_, nullptr);
  if (set_layout_ != VK_NULL_HANDLE) fn.vkDestroyDescriptorSetLayout(device, set_layout_, nullptr);
  cache_ = VK_NULL_HANDLE;
  layout_ = VK_NULL_HANDLE;
  set_layout_ = VK_NULL_HANDLE;
}

int Pipelines::created() const {
  std::lock_guard lock(mutex_);
  int n = 0;
  for (VkPipeline p : pipelines_) n += p != VK_NULL_HANDLE ? 1 : 0;
  return n;
}

VkPipeline Pipelines::get(Kernel kernel) {
  std::lock_guard lock(mutex_);
  VkPipeline& slot = pipelines_[static_cast<std::size_t>(kernel)];
  if (slot != VK_NULL_HANDLE) return slot;
  const DeviceFunctions& fn = context_->fn();
  VkDevice device = context_->handle();
  std::span<const std::uint32_t> code = spirv(kernel);
  VkShaderModuleCreateInfo module_info{};
  module_info.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
  module_info.codeSize = code.size_bytes();
  module_info.pCode = code.data();
  VkShaderModule module = VK_NULL_HANDLE;
  context_->check(fn.vkCreateShaderModule(device, &module_info, nullptr, &module),
                  "vkCreateShaderModule");
  VkComputePipelineCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
  info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  info.stage.module = module;
  info.stage.pName = "main";
  info.layout = layout_;
  VkResult result = fn.vkCreateComputePipelines(device, cache_, 1, &info, nullptr, &slot);
  fn.vkDestroyShaderModule(device, module, nullptr);
  if (result != VK_SUCCESS) slot = VK_NULL_HANDLE;
  context_->check(result, "vkCreateComputePipelines");
  return slot;
}

}  // namespace exogpu::vulkan
