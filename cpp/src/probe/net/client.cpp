// The probe client: one control connection (handshake, ping-pong, test
// requests and results), N data connections for the bulk test, and one
// connected UDP socket for the jitter and loss test.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <latch>
#include <thread>

#include "exogpu/netprobe.hpp"
#include "probe/net/protocol.hpp"
#include "probe/net/socket.hpp"

namespace exogpu::net {

using detail::Clock;
using detail::Fd;
using detail::Frame;
using detail::FrameType;
using detail::Reader;
using detail::Writer;

namespace {

constexpr int kWarmupPings = 5;
constexpr std::size_t kBulkSendBytes = 128 * 1024;

std::chrono::nanoseconds to_ns(double seconds) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
}

std::int64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void validate(const ClientOptions& o) {
  if (o.host.empty()) throw InvalidArgument("probe host is empty");
  if (o.port == 0) throw InvalidArgument("probe port must be 1 to 65535");
  if (o.token.empty() || o.token.size() > detail::kMaxTokenBytes) {
    throw InvalidArgument("probe token must be 1 to 256 bytes, got " + std::to_string(o.token.size()));
  }
  if (!(o.seconds > 0) || !(o.seconds <= 3600)) throw InvalidArgument("seconds must be above 0 and at most 3600");
  if (o.streams > 1024) throw InvalidArgument("streams must be 0 to 1024");
  if (!(o.udp_rate_bps >= 0) || !std::isfinite(o.udp_rate_bps)) {
    throw InvalidArgument("udp_rate_bps must be non-negative and finite");
  }
  if (o.udp_packet_size < detail::kDatagramHeaderBytes || o.udp_packet_size > detail::kMaxDatagramBytes) {
    throw InvalidArgument("udp_packet_size must be 32 to 65000 bytes");
  }
  if (!(o.rtt_seconds >= 0) || !(o.rtt_seconds <= 600)) throw InvalidArgument("rtt_seconds must be 0 to 600");
  if (!(o.connect_timeout > 0) || !(o.connect_timeout <= 600)) {
    throw InvalidArgument("connect_timeout must be above 0 and at most 600");
  }
  if (o.socket_buffer < 0) throw InvalidArgument("socket_buffer must be non-negative");
}

struct Welcome {
  std::uint32_t session = 0;
  std::array<std::byte, detail::kCookieBytes> cookie{};
};

class Session {
 public:
  Session(const ClientOptions& options, Fd control, detail::Endpoint peer)
      : options_(options), control_(std::move(control)), peer_(peer), reader_(control_.get()) {}

  Welcome handshake();
  RttStats ping_pong();
  void bulk(NetResult& result);
  UdpStats udp(double rtt_seconds);
  void bye();

 private:
  Frame request(FrameType type, std::span<const std::byte> payload, FrameType expected, const char* what);

  const ClientOptions& options_;
  Fd control_;
  detail::Endpoint peer_;
  detail::FrameReader reader_;
  Welcome welcome_;
};

Frame Session::request(FrameType type, std::span<const std::byte> payload, FrameType expected, const char* what) {
  detail::write_frame(control_.get(), type, payload);
  Frame frame;
  if (!reader_.next(frame)) throw ProbeError(std::string(what) + ": server closed the connection");
  if (frame.type == FrameType::Error) detail::throw_error_frame(frame, what);
  if (frame.type != expected) {
    throw ProbeError(std::string(what) + ": unexpected reply type " +
                     std::to_string(static_cast<unsigned>(frame.type)));
  }
  return frame;
}

Welcome Session::handshake() {
  Writer w;
  w.bytes(detail::kHelloMagic)
      .u16(kProtocolVersion)
      .u16(static_cast<std::uint16_t>(detail::Role::Control))
      .u16(static_cast<std::uint16_t>(options_.token.size()))
      .bytes(std::as_bytes(std::span(options_.token)));
  const Frame frame = request(FrameType::Hello, w.data(), FrameType::Welcome, "handshake");
  Reader r(frame.payload);
  const auto version = r.u16();
  if (version != kProtocolVersion) {
    throw ProbeError("handshake: server speaks protocol version " + std::to_string(version) + ", this client " +
                     std::to_string(kProtocolVersion));
  }
  welcome_.session = r.u32();
  const auto cookie = r.bytes(detail::kCookieBytes);
  std::copy(cookie.begin(), cookie.end(), welcome_.cookie.begin());
  return welcome_;
}

RttStats Session::ping_pong() {
  std::vector<double> samples;
  samples.reserve(options_.rtt_samples);
  const auto budget_end = Clock::now() + to_ns(options_.rtt_seconds);
  Frame frame;
  for (std::uint64_t seq = 0;; ++seq) {
    const bool warmup = seq < kWarmupPings;
    if (!warmup && (samples.size() >= options_.rtt_samples || Clock::now() >= budget_end)) break;
    Writer w;
    w.u64(seq);
    const auto bytes = detail::encode_frame(FrameType::Ping, w.data());
    const auto t0 = Clock::now();
    detail::send_all(control_.get(), bytes, "ping");
    if (!reader_.next(frame)) throw ProbeError("ping: server closed the connection");
    const auto t1 = Clock::now();
    if (frame.type == FrameType::Error) detail::throw_error_frame(frame, "ping");
    if (frame.type != FrameType::Pong || frame.payload.size() != 8 || Reader(frame.payload).u64() != seq) {
      throw ProbeError("ping: reply does not match the request");
    }
    if (!warmup) samples.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  return summarize_rtt(std::move(samples));
}

void Session::bulk(NetResult& result) {
  const unsigned n = options_.streams;
  Writer start;
  start.u16(static_cast<std::uint16_t>(n)).f64(options_.seconds);
  (void)request(FrameType::BulkStart, start.data(), FrameType::Ok, "bulk test");

  const auto timeout = to_ns(options_.connect_timeout);
  std::vector<Fd> streams;
  for (unsigned i = 0; i < n; ++i) {
    Fd s = detail::connect_tcp({peer_}, timeout, nullptr);
    detail::set_buffer_sizes(s.get(), options_.socket_buffer);
    detail::set_timeouts(s.get(), timeout, timeout + to_ns(options_.seconds));
    Writer hello;
    hello.bytes(detail::kHelloMagic)
        .u16(kProtocolVersion)
        .u16(static_cast<std::uint16_t>(detail::Role::Data))
        .u32(welcome_.session)
        .bytes(welcome_.cookie)
        .u16(static_cast<std::uint16_t>(i));
    detail::write_frame(s.get(), FrameType::Hello, hello.data());
    detail::FrameReader reader(s.get());
    Frame frame;
    if (!reader.next(frame)) throw ProbeError("bulk stream: server closed the connection");
    if (frame.type == FrameType::Error) detail::throw_error_frame(frame, "bulk stream");
    if (frame.type != FrameType::Ok) throw ProbeError("bulk stream: unexpected reply");
    streams.push_back(std::move(s));
  }

  std::latch ready(static_cast<std::ptrdiff_t>(n) + 1);
  std::atomic<std::int64_t> start_ns{0};
  std::vector<std::uint64_t> retransmits(n, 0);
  std::vector<int> errors(n, 0);
  std::vector<std::jthread> senders;
  senders.reserve(n);
  for (unsigned i = 0; i < n; ++i) {
    senders.emplace_back([&, i] {
      // A pattern rather than zeros, so that no layer can compress it.
      std::vector<std::byte> buffer(kBulkSendBytes);
      for (std::size_t k = 0; k < buffer.size(); ++k) buffer[k] = static_cast<std::byte>((k * 131 + i) & 0xff);
      const int fd = streams[i].get();
      ready.arrive_and_wait();
      const auto deadline = Clock::time_point(Clock::duration(start_ns.load())) + to_ns(options_.seconds);
      while (Clock::now() < deadline) {
        const ssize_t sent = ::send(fd, buffer.data(), buffer.size(), MSG_NOSIGNAL);
        if (sent < 0 && errno != EINTR) {
          errors[i] = errno;
          break;
        }
      }
      ::shutdown(fd, SHUT_WR);
      // The server closes its side once it has read everything: then every
      // byte is acknowledged and the retransmission count is final.
      std::byte sink[256];
      while (::recv(fd, sink, sizeof sink, 0) > 0) {
      }
      tcp_info info{};
      socklen_t len = sizeof info;
      if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0) retransmits[i] = info.tcpi_total_retrans;
    });
  }
  start_ns.store(Clock::now().time_since_epoch().count());
  ready.arrive_and_wait();
  senders.clear();  // joins

  const Frame frame = request(FrameType::BulkEnd, {}, FrameType::BulkResult, "bulk test");
  Reader r(frame.payload);
  result.bulk_bytes = r.u64();
  result.bulk_elapsed_seconds = r.f64();
  const unsigned joined = r.u16();
  const unsigned finished = r.u16();
  const bool capped = r.u8() != 0;
  for (unsigned i = 0; i < n; ++i) {
    if (errors[i] != 0 && errors[i] != EPIPE && errors[i] != ECONNRESET) {
      throw ProbeError("bulk stream " + std::to_string(i) + ": " + detail::os_error(errors[i]));
    }
  }
  if (joined != n || finished != n) {
    throw ProbeError("bulk test: server saw " + std::to_string(finished) + " of " + std::to_string(n) +
                     " streams complete");
  }
  if (capped) throw ProbeError("bulk test: the server's byte limit per test cut it short; use fewer seconds");
  if (result.bulk_elapsed_seconds <= 0) throw ProbeError("bulk test: no data reached the server");
  result.bandwidth_bps = static_cast<double>(result.bulk_bytes) * 8.0 / result.bulk_elapsed_seconds;
  std::uint64_t total = 0;
  for (const auto v : retransmits) total += v;
  result.retransmits = total;
}

// Sleeps until an absolute CLOCK_MONOTONIC time; with a small timer slack
// the pacing of datagrams stays within a few microseconds.
void sleep_until(std::int64_t monotonic_ns) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(monotonic_ns / 1000000000);
  ts.tv_nsec = static_cast<long>(monotonic_ns % 1000000000);
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

std::int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Lowers this thread's timer slack for the lifetime of the object.
class TimerSlack {
 public:
  explicit TimerSlack(unsigned long ns) : previous_(static_cast<unsigned long>(::prctl(PR_GET_TIMERSLACK))) {
    ::prctl(PR_SET_TIMERSLACK, ns);
  }
  ~TimerSlack() { ::prctl(PR_SET_TIMERSLACK, previous_); }
  TimerSlack(const TimerSlack&) = delete;
  TimerSlack& operator=(const TimerSlack&) = delete;

 private:
  unsigned long previous_;
};

UdpStats Session::udp(double rtt_seconds) {
  UdpStats stats;
  stats.rate_bps = options_.udp_rate_bps;
  stats.packet_size = options_.udp_packet_size;
  stats.seconds = options_.seconds;
  Writer start;
  start.f64(options_.udp_rate_bps).u16(static_cast<std::uint16_t>(options_.udp_packet_size)).f64(options_.seconds);
  const Frame ok = request(FrameType::UdpStart, start.data(), FrameType::Ok, "UDP test");
  Reader okr(ok.payload);
  const std::uint64_t key = okr.u64();
  (void)okr.u16();  // the server's UDP port, equal to its TCP port
  // Datagrams go to the address and port this client reached over TCP: that
  // is the one that works from here through a relay or port mapping.
  const detail::Endpoint& target = peer_;
  Fd sock(::socket(target.family(), SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP));
  if (!sock.valid()) throw ProbeError("UDP socket: " + detail::os_error(errno));
  const int sndbuf = 4 << 20;
  ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (::connect(sock.get(), target.addr(), target.length) != 0) {
    throw ProbeError("UDP connect: " + detail::os_error(errno));
  }
  std::vector<std::byte> packet(options_.udp_packet_size, std::byte{0});
  const double interval_ns = 8.0 * options_.udp_packet_size / options_.udp_rate_bps * 1e9;
  const auto length_ns = static_cast<std::int64_t>(options_.seconds * 1e9);
  TimerSlack slack(1000);
  const std::int64_t begin = monotonic_ns();
  std::uint64_t seq = 0;
  std::int64_t now = begin;
  while (now - begin < length_ns) {
    // Send every datagram that is due by now, then sleep until the next.
    const auto due = static_cast<std::uint64_t>(static_cast<double>(now - begin) / interval_ns) + 1;
    while (seq < due) {
      Writer h;
      h.u32(detail::kDatagramMagic).u32(welcome_.session).u64(key).u64(seq).u64(static_cast<std::uint64_t>(realtime_ns()));
      std::copy(h.data().begin(), h.data().end(), packet.begin());
      const ssize_t n = ::send(sock.get(), packet.data(), packet.size(), 0);
      if (n < 0) {
        // An earlier ICMP "port unreachable" or a full queue: try again.
        if (errno == ECONNREFUSED || errno == EINTR || errno == ENOBUFS || errno == EAGAIN) continue;
        throw ProbeError("UDP send: " + detail::os_error(errno));
      }
      ++seq;
    }
    sleep_until(begin + static_cast<std::int64_t>(static_cast<double>(seq) * interval_ns));
    now = monotonic_ns();
  }
  const double elapsed = static_cast<double>(monotonic_ns() - begin) / 1e9;
  stats.sent = seq;
  stats.achieved_rate_bps = static_cast<double>(seq) * options_.udp_packet_size * 8.0 / elapsed;

  Writer end;
  // Wait for datagrams still in flight: a few round trips, at least 200 ms.
  end.u64(stats.sent).f64(std::min(2.0, 0.2 + 4 * rtt_seconds));
  const Frame frame = request(FrameType::UdpEnd, end.data(), FrameType::UdpResult, "UDP test");
  Reader r(frame.payload);
  stats.received = r.u64();
  stats.duplicates = r.u64();
  stats.reordered = r.u64();
  (void)r.u64();  // out of range: sequence numbers the client never sent
  stats.jitter_us = r.f64() / 1000.0;
  stats.lost = stats.sent - std::min(stats.sent, stats.received);
  stats.loss = stats.sent == 0 ? 0.0 : static_cast<double>(stats.lost) / static_cast<double>(stats.sent);
  return stats;
}

void Session::bye() { (void)request(FrameType::Bye, {}, FrameType::Ok, "closing"); }

}  // namespace

NetResult run_probe(const ClientOptions& options) {
  validate(options);
  const auto endpoints = detail::resolve(options.host, options.port, false);
  detail::Endpoint peer;
  Fd control = detail::connect_tcp(endpoints, to_ns(options.connect_timeout), &peer);
  detail::set_nodelay(control.get());
  // Results of a test arrive after the test itself plus the server's grace.
  const auto wait = to_ns(options.connect_timeout + options.seconds + 10);
  detail::set_timeouts(control.get(), wait, wait);

  NetResult result;
  result.host = options.host;
  result.address = peer.numeric_host();
  result.port = options.port;
  result.streams = options.streams;
  result.seconds = options.seconds;

  Session session(options, std::move(control), peer);
  (void)session.handshake();
  if (options.rtt_seconds > 0 && options.rtt_samples > 0) result.rtt = session.ping_pong();
  if (options.streams > 0) session.bulk(result);
  if (options.udp_rate_bps > 0) {
    const double rtt = result.rtt ? result.rtt->median_us / 1e6 : 0.0;
    result.udp = session.udp(rtt);
  }
  session.bye();
  return result;
}

}  // namespace exogpu::net
