#include "probe/net/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "exogpu/netprobe.hpp"

namespace exogpu::net::detail {

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int Fd::release() noexcept {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::reset() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

std::string os_error(int error) {
  char buffer[256];
  // GNU strerror_r may return a static string instead of filling the buffer.
  const char* text = strerror_r(error, buffer, sizeof buffer);
  return text;
}

std::string Endpoint::numeric_host() const {
  char host[NI_MAXHOST];
  if (::getnameinfo(addr(), length, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) {
    return "?";
  }
  return host;
}

std::uint16_t Endpoint::port() const {
  if (family() == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  }
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  }
  return 0;
}

std::vector<Endpoint> resolve(const std::string& host, std::uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  const int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    throw ProbeError("cannot resolve host '" + host + "': " +
                     (rc == EAI_SYSTEM ? os_error(errno) : std::string(::gai_strerror(rc))));
  }
  std::vector<Endpoint> endpoints;
  for (const addrinfo* it = list; it != nullptr; it = it->ai_next) {
    if (it->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Endpoint endpoint;
    std::memcpy(&endpoint.storage, it->ai_addr, it->ai_addrlen);
    endpoint.length = it->ai_addrlen;
    endpoints.push_back(endpoint);
  }
  ::freeaddrinfo(list);
  if (endpoints.empty()) throw ProbeError("host '" + host + "' has no usable address");
  return endpoints;
}

namespace {

// Connects one socket with a deadline: non-blocking connect, then poll.
int connect_one(const Endpoint& endpoint, std::chrono::nanoseconds timeout, std::string& why) {
  Fd fd(::socket(endpoint.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP));
  if (!fd.valid()) {
    why = os_error(errno);
    return -1;
  }
  if (::connect(fd.get(), endpoint.addr(), endpoint.length) != 0) {
    if (errno != EINPROGRESS) {
      why = os_error(errno);
      return -1;
    }
    pollfd p{fd.get(), POLLOUT, 0};
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
    const int ready = ::poll(&p, 1, static_cast<int>(ms > 0 ? ms : 1));
    if (ready <= 0) {
      why = ready == 0 ? "timed out" : os_error(errno);
      return -1;
    }
    int error = 0;
    socklen_t len = sizeof error;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) {
      why = os_error(error);
      return -1;
    }
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return fd.release();
}

}  // namespace

Fd connect_tcp(const std::vector<Endpoint>& endpoints, std::chrono::nanoseconds timeout,
               Endpoint* connected) {
  std::string reasons;
  for (const Endpoint& endpoint : endpoints) {
    std::string why;
    const int fd = connect_one(endpoint, timeout, why);
    if (fd >= 0) {
      if (connected != nullptr) *connected = endpoint;
      return Fd(fd);
    }
    if (!reasons.empty()) reasons += "; ";
    reasons += endpoint.numeric_host() + " port " + std::to_string(endpoint.port()) + ": " + why;
  }
  throw ProbeError("cannot connect: " + reasons);
}

namespace {
timeval to_timeval(std::chrono::nanoseconds duration) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(duration).count();
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(us / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
  if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1000;  // zero would mean "forever"
  return tv;
}
}  // namespace

void set_timeouts(int fd, std::chrono::nanoseconds receive, std::chrono::nanoseconds send) {
  const timeval r = to_timeval(receive);
  const timeval s = to_timeval(send);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof r);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof s);
}

void set_nodelay(int fd) {
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

void set_buffer_sizes(int fd, int bytes) {
  if (bytes <= 0) return;  // keep the kernel's autotuning
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

void send_all(int fd, std::span<const std::byte> data, const char* what) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) throw ProbeError(std::string(what) + ": send timed out");
      throw ProbeError(std::string(what) + ": " + os_error(errno));
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
}

bool receive_exact(int fd, std::span<std::byte> data, const char* what) {
  std::size_t got = 0;
  while (got < data.size()) {
    const ssize_t n = ::recv(fd, data.data() + got, data.size() - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) {
      if (got == 0) return false;
      throw ProbeError(std::string(what) + ": connection closed mid-frame");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) throw ProbeError(std::string(what) + ": timed out");
    throw ProbeError(std::string(what) + ": " + os_error(errno));
  }
  return true;
}

}  // namespace exogpu::net::detail
