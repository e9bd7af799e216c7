// A real shared library standing in for a HIP runtime too old for exogpu:
// built from the backend's own symbol table, it has every entry point but
// hipMemcpyPeerAsync. (The no-device case is tested against the real HIP
// runtime, which runs here.)
#include <type_traits>

#include "backends/hip/hip_api.hpp"

using namespace exogpu::hip;

#define EXOGPU_FAKE_EXPORT extern "C" __attribute__((visibility("default")))
#define hipMemcpyPeerAsync exogpu_fake_omitted_hipMemcpyPeerAsync

template <typename T>
T fake_result() {
  if constexpr (std::is_pointer_v<T>) {
    return nullptr;
  } else {
    return hipErrorNoDevice;
  }
}

#define EXOGPU_FAKE_STUB(member, exported, ret, params) \
  EXOGPU_FAKE_EXPORT ret exported params { return fake_result<ret>(); }
EXOGPU_HIP_SYMBOLS(EXOGPU_FAKE_STUB)
