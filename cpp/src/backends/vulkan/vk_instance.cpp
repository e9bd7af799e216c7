#include "vk_instance.hpp"

#include <array>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

#include "exogpu/error.hpp"
#include "vk_error.hpp"

#if defined(_WIN32)
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace exogpu::vulkan {
namespace {

#if defined(_WIN32)
constexpr std::array kLoaderNames{"vulkan-1.dll"};
#elif defined(__APPLE__)
constexpr std::array kLoaderNames{"libvulkan.1.dylib", "libvulkan.dylib", "libMoltenVK.dylib"};
#else
constexpr std::array kLoaderNames{"libvulkan.so.1", "libvulkan.so"};
#endif

constexpr const char* kValidationLayer = "VK_LAYER_KHRONOS_validation";

// Message ids the validation layer raises about the driver or loader rather
// than about this backend's use of the API. Keep each one explained.
constexpr std::array<std::int32_t, 0> kIgnoredMessageIds{};

VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(
    VkDebugUtilsMessageSeverityFlagBitsEXT severity, VkDebugUtilsMessageTypeFlagsEXT types,
    const VkDebugUtilsMessengerCallbackDataEXT* data, void* user) {
  if (severity < VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT || data == nullptr) {
    return VK_FALSE;
  }
  for (std::int32_t id : kIgnoredMessageIds) {
    if (data->messageIdNumber == id) return VK_FALSE;
  }
  std::string message = severity >= VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT
                            ? "validation error"
                            : "validation warning";
  if ((types & VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT) != 0) message += " (performance)";
  message += ": ";
  message += data->pMessageIdName != nullptr ? data->pMessageIdName : "?";
  message += ": ";
  message += data->pMessage != nullptr ? data->pMessage : "";
  std::fprintf(stderr, "exogpu vulkan: %s\n", message.c_str());
  static_cast<Instance*>(user)->record_message(std::move(message));
  return VK_FALSE;
}

VkDebugUtilsMessengerCreateInfoEXT messenger_info(Instance* instance) {
  VkDebugUtilsMessengerCreateInfoEXT info{};
  info.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
  info.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                         VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  info.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
  info.pfnUserCallback = &on_debug_message;
  info.pUserData = instance;
  return info;
}

}  // namespace

std::string version_string(std::uint32_t version) {
  return std::to_string(VK_API_VERSION_MAJOR(version)) + "." +
         std::to_string(VK_API_VERSION_MINOR(version)) + "." +
         std::to_string(VK_API_VERSION_PATCH(version));
}

LoaderLibrary::~LoaderLibrary() {
  if (handle_ == nullptr) return;
#if defined(_WIN32)
  FreeLibrary(static_cast<HMODULE>(handle_));
#else
  dlclose(handle_);
#endif
}

bool LoaderLibrary::open(std::string& error) {
  std::string tried;
  for (const char* candidate : kLoaderNames) {
#if defined(_WIN32)
    HMODULE module = LoadLibraryA(candidate);
    if (module != nullptr) {
      handle_ = module;
      get_instance_proc_addr_ = reinterpret_cast<PFN_vkGetInstanceProcAddr>(
          reinterpret_cast<void*>(GetProcAddress(module, "vkGetInstanceProcAddr")));
    }
#else
    handle_ = dlopen(candidate, RTLD_NOW | RTLD_LOCAL);
    if (handle_ != nullptr) {
      get_instance_proc_addr_ =
          reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(handle_, "vkGetInstanceProcAddr"));
    } else {
      const char* why = dlerror();
      if (!tried.empty()) tried += "; ";
      tried += why != nullptr ? why : candidate;
    }
#endif
    if (handle_ != nullptr) {
      name_ = candidate;
      if (get_instance_proc_addr_ == nullptr) {
        error = std::string(candidate) + " has no vkGetInstanceProcAddr";
        return false;
      }
      return true;
    }
  }
  error = std::string(kLoaderNames[0]) + " not found (" + tried + ")";
  return false;
}

Instance::~Instance() {
  if (instance_ == VK_NULL_HANDLE) return;
  if (messenger_ != VK_NULL_HANDLE && fn_.vkDestroyDebugUtilsMessengerEXT != nullptr) {
    fn_.vkDestroyDebugUtilsMessengerEXT(instance_, messenger_, nullptr);
  }
  fn_.vkDestroyInstance(instance_, nullptr);
}

std::shared_ptr<Instance> Instance::create(const InstanceOptions& options, std::string& reason) {
  auto self = std::make_shared<Instance>();
  if (!self->library_.open(reason)) return nullptr;
  auto gipa = self->library_.get_instance_proc_addr();
  self->global_.vkGetInstanceProcAddr = gipa;
#define EXOGPU_VK_LOAD(name) \
  self->global_.name = reinterpret_cast<PFN_##name>(gipa(VK_NULL_HANDLE, #name));
  EXOGPU_VK_GLOBAL_FUNCTIONS(EXOGPU_VK_LOAD)
#undef EXOGPU_VK_LOAD
  const GlobalFunctions& g = self->global_;
  if (g.vkCreateInstance == nullptr || g.vkEnumerateInstanceExtensionProperties == nullptr ||
      g.vkEnumerateInstanceLayerProperties == nullptr) {
    reason = self->library_.name() + " is not a usable Vulkan loader (missing vkCreateInstance)";
    return nullptr;
  }
  // Vulkan 1.0 loaders lack vkEnumerateInstanceVersion; timeline semaphores
  // need 1.2, so such a loader cannot run this backend.
  std::uint32_t loader_version = VK_API_VERSION_1_0;
  if (g.vkEnumerateInstanceVersion != nullptr) g.vkEnumerateInstanceVersion(&loader_version);
  self->loader_version_ = loader_version;
  if (loader_version < VK_API_VERSION_1_2) {
    reason = "Vulkan loader " + version_string(loader_version) + " is older than 1.2";
    return nullptr;
  }
  self->api_version_ = loader_version < VK_API_VERSION_1_3 ? loader_version : VK_API_VERSION_1_3;

  std::uint32_t count = 0;
  g.vkEnumerateInstanceExtensionProperties(nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> available(count);
  g.vkEnumerateInstanceExtensionProperties(nullptr, &count, available.data());
  auto has_extension = [&](const char* name) {
    for (const auto& e : available) {
      if (std::strcmp(e.extensionName, name) == 0) return true;
    }
    return false;
  };
  std::vector<const char*> extensions;
  std::vector<const char*> layers;
  VkInstanceCreateFlags flags = 0;
  // MoltenVK is a portability implementation, listed only when asked for.
  if (has_extension(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
    extensions.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
    flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
  }
  VkDebugUtilsMessengerCreateInfoEXT debug_info = messenger_info(self.get());
  if (options.validation) {
    g.vkEnumerateInstanceLayerProperties(&count, nullptr);
    std::vector<VkLayerProperties> layer_list(count);
    g.vkEnumerateInstanceLayerProperties(&count, layer_list.data());
    bool found = false;
    for (const auto& layer : layer_list) {
      found = found || std::strcmp(layer.layerName, kValidationLayer) == 0;
    }
    if (!found) {
      reason = std::string("EXOGPU_VULKAN_VALIDATION is set but ") + kValidationLayer +
               " is not installed (Debian: vulkan-validationlayers)";
      return nullptr;
    }
    if (!has_extension(VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
      reason = "EXOGPU_VULKAN_VALIDATION is set but VK_EXT_debug_utils is missing";
      return nullptr;
    }
    layers.push_back(kValidationLayer);
    extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
  }

  VkApplicationInfo app{};
  app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  app.pApplicationName = "exogpu";
  app.applicationVersion = 1;
  app.pEngineName = "exogpu";
  app.engineVersion = 1;
  app.apiVersion = self->api_version_;
  VkInstanceCreateInfo info{};
  info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
  info.pNext = options.validation ? &debug_info : nullptr;
  info.flags = flags;
  info.pApplicationInfo = &app;
  info.enabledLayerCount = static_cast<std::uint32_t>(layers.size());
  info.ppEnabledLayerNames = layers.data();
  info.enabledExtensionCount = static_cast<std::uint32_t>(extensions.size());
  info.ppEnabledExtensionNames = extensions.data();
  VkResult result = g.vkCreateInstance(&info, nullptr, &self->instance_);
  if (result != VK_SUCCESS) {
    self->instance_ = VK_NULL_HANDLE;
    reason = "vkCreateInstance failed with " + std::string(result_name(result));
    return nullptr;
  }
  VkInstance instance = self->instance_;
#define EXOGPU_VK_LOAD(name) \
  self->fn_.name = reinterpret_cast<PFN_##name>(gipa(instance, #name));
  EXOGPU_VK_INSTANCE_FUNCTIONS(EXOGPU_VK_LOAD)
  if (options.validation) {
    EXOGPU_VK_DEBUG_FUNCTIONS(EXOGPU_VK_LOAD)
  }
#undef EXOGPU_VK_LOAD
#define EXOGPU_VK_REQUIRE(name)                                        \
  if (self->fn_.name == nullptr) {                                     \
    reason = "the Vulkan loader does not provide " + std::string(#name); \
    return nullptr;                                                    \
  }
  EXOGPU_VK_INSTANCE_FUNCTIONS(EXOGPU_VK_REQUIRE)
#undef EXOGPU_VK_REQUIRE
  if (options.validation) {
    self->validation_ = true;
    if (self->fn_.vkCreateDebugUtilsMessengerEXT == nullptr ||
        self->fn_.vkCreateDebugUtilsMessengerEXT(instance, &debug_info, nullptr,
                                                 &self->messenger_) != VK_SUCCESS) {
      reason = "vkCreateDebugUtilsMessengerEXT failed";
      return nullptr;
    }
  }
  return self;
}

void Instance::record_message(std::string message) {
  std::lock_guard lock(messages_mutex_);
  pending_messages_.push_back(std::move(message));
  message_count_.fetch_add(1);
}

std::vector<std::string> Instance::take_validation_messages() {
  std::lock_guard lock(messages_mutex_);
  return std::exchange(pending_messages_, {});
}

void Instance::check_validation(const std::string& where) {
  if (!validation_) return;
  std::vector<std::string> messages = take_validation_messages();
  if (messages.empty()) return;
  std::string text = "Vulkan validation reported " + std::to_string(messages.size()) +
                     " message(s) before " + where + ":";
  for (const auto& m : messages) text += "\n  " + m;
  throw DeviceError(text);
}

}  // namespace exogpu::vulkan
