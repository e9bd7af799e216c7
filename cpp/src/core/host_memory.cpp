// The host's physical memory: what the CPU device reports as its memory and
// the capacity of the host memory pool (registry.hpp).
#include <charconv>
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include "exogpu/registry.hpp"

#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#elif defined(_WIN32)
#include <windows.h>
#else
#include <unistd.h>
#endif

namespace exogpu {

std::uint64_t host_physical_memory() {
#if defined(__APPLE__)
  std::uint64_t bytes = 0;
  std::size_t size = sizeof bytes;
  return sysctlbyname("hw.memsize", &bytes, &size, nullptr, 0) == 0 ? bytes : 0;
#elif defined(_WIN32)
  MEMORYSTATUSEX status{};
  status.dwLength = sizeof status;
  return GlobalMemoryStatusEx(&status) ? static_cast<std::uint64_t>(status.ullTotalPhys) : 0;
#else
  // MemTotal, as free(1) shows it (parsed with from_chars, which no global
  // locale a driver sets can change); sysconf where /proc is not mounted.
  std::ifstream file("/proc/meminfo");
  std::string line;
  constexpr std::string_view key = "MemTotal:";
  while (std::getline(file, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    const char* begin = line.data() + key.size();
    const char* end = line.data() + line.size();
    while (begin < end && *begin == ' ') ++begin;
    std::uint64_t kib = 0;
    if (std::from_chars(begin, end, kib).ec == std::errc{} && kib > 0) return kib * 1024;
    break;
  }
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) : 0;
#endif
}

}  // namespace exogpu
