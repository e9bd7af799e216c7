// Thin RAII and deadline helpers over POSIX sockets, shared by the network
// probe's client and server. Everything here reports failures as ProbeError
// with the operation and the OS reason.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace exogpu::net::detail {

using Clock = std::chrono::steady_clock;

// Owns one file descriptor; closes it exactly once.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  ~Fd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept;
  void reset() noexcept;

 private:
  int fd_ = -1;
};

// A resolved socket address of either family.
struct Endpoint {
  sockaddr_storage storage{};
  socklen_t length = 0;

  [[nodiscard]] const sockaddr* addr() const noexcept {
    return reinterpret_cast<const sockaddr*>(&storage);
  }
  [[nodiscard]] int family() const noexcept { return storage.ss_family; }
  [[nodiscard]] std::string numeric_host() const;
  [[nodiscard]] std::uint16_t port() const;
};

// "strerror" of errno, thread-safe.
[[nodiscard]] std::string os_error(int error);

// Every address `host` resolves to for TCP on `port`, in resolver order.
// Throws ProbeError naming the host when it does not resolve.
[[nodiscard]] std::vector<Endpoint> resolve(const std::string& host, std::uint16_t port,
                                            bool passive);

// Connects a TCP socket to the first endpoint that answers within `timeout`.
// Throws ProbeError listing why each address failed.
[[nodiscard]] Fd connect_tcp(const std::vector<Endpoint>& endpoints, std::chrono::nanoseconds timeout,
                             Endpoint* connected);

void set_timeouts(int fd, std::chrono::nanoseconds receive, std::chrono::nanoseconds send);
void set_nodelay(int fd);
void set_buffer_sizes(int fd, int bytes);

// Sends all of `data` or throws ProbeError (peer gone, timeout).
void send_all(int fd, std::span<const std::byte> data, const char* what);

// Fills `data` completely. Returns false on a clean end of stream before the
// first byte; throws ProbeError on a timeout, error or a stream cut mid-way.
[[nodiscard]] bool receive_exact(int fd, std::span<std::byte> data, const char* what);

}  // namespace exogpu::net::detail
