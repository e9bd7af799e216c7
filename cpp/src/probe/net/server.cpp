// The probe server: an acceptor thread, a UDP receiver thread and one
// thread per accepted connection, all bounded by ServerOptions. Every thread
// blocks only on sockets with timeouts (or short sleeps that watch the stop
// flag), so close() can cut everything and join it promptly.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "exogpu/netprobe.hpp"
#include "probe/net/protocol.hpp"
#include "probe/net/socket.hpp"

namespace exogpu::net {

using detail::Clock;
using detail::ErrorCode;
using detail::Fd;
using detail::Frame;
using detail::FrameType;
using detail::Reader;
using detail::Writer;

namespace {

constexpr auto kPollInterval = std::chrono::milliseconds(200);
// Extra time a bulk stream may run past its test length: connection set-up
// and the data still queued in socket buffers when the sender stops.
constexpr auto kBulkGrace = std::chrono::seconds(3);
constexpr std::size_t kBulkReceiveBytes = 128 * 1024;  // as iperf3: larger measured no faster
constexpr double kMaxUdpDrainSeconds = 2.0;

std::chrono::nanoseconds to_ns(double seconds) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(seconds));
}

// A handshake or request the server turns down: reported to the peer as an
// ERROR frame, counted by code, and the connection closed.
struct Rejected {
  ErrorCode code;
};

[[noreturn]] void reject(int fd, ErrorCode code, const std::string& message) {
  detail::write_error(fd, code, message);
  throw Rejected{code};
}

struct BulkTest {
  unsigned expected_streams = 0;
  Clock::time_point deadline;
  std::uint64_t max_bytes = 0;
  std::atomic<std::uint64_t> bytes{0};
  std::mutex mu;
  std::condition_variable cv;
  unsigned joined = 0;
  unsigned finished = 0;
  bool capped = false;
  std::optional<Clock::time_point> first;
  std::optional<Clock::time_point> last;
};

struct UdpTest {
  explicit UdpTest(std::uint64_t key_, std::uint64_t capacity) : key(key_), tracker(capacity) {}
  std::uint64_t key;
  std::mutex mu;
  SequenceTracker tracker;
  JitterEstimator jitter;
};

struct Session {
  std::uint32_t id = 0;
  std::array<std::byte, detail::kCookieBytes> cookie{};
  std::mutex mu;
  std::shared_ptr<BulkTest> bulk;
};

void validate(const ServerOptions& o) {
  if (o.token.empty() || o.token.size() > detail::kMaxTokenBytes) {
    throw InvalidArgument("probe server token must be 1 to 256 bytes, got " + std::to_string(o.token.size()));
  }
  if (o.max_sessions < 1) throw InvalidArgument("max_sessions must be at least 1");
  if (o.max_connections < 2) throw InvalidArgument("max_connections must be at least 2");
  if (o.max_streams < 1 || o.max_streams > 1024) throw InvalidArgument("max_streams must be 1 to 1024");
  const auto positive = [](double v, const char* name) {
    if (!(v > 0) || !std::isfinite(v)) throw InvalidArgument(std::string(name) + " must be positive and finite");
  };
  positive(o.max_test_seconds, "max_test_seconds");
  positive(o.max_udp_rate_bps, "max_udp_rate_bps");
  positive(o.handshake_timeout, "handshake_timeout");
  positive(o.idle_timeout, "idle_timeout");
  if (o.max_test_bytes == 0) throw InvalidArgument("max_test_bytes must be positive");
  if (o.max_udp_packets == 0 || o.max_udp_packets > (std::uint64_t{1} << 32)) {
    throw InvalidArgument("max_udp_packets must be 1 to 2^32");
  }
}

std::int64_t realtime_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  Fd listener;
  Fd udp;
  Fd wake;
  detail::Endpoint bound;
  std::atomic<bool> stopping{false};
  std::atomic<bool> closed{false};
  std::thread acceptor;
  std::thread udp_receiver;

  mutable std::mutex mu;  // guards everything below
  std::unordered_set<int> open_fds;
  std::unordered_map<std::uint64_t, std::thread> workers;
  std::vector<std::uint64_t> finished_workers;
  std::uint64_t next_worker = 0;
  std::unordered_map<std::uint32_t, std::shared_ptr<Session>> sessions;
  std::unordered_map<std::uint32_t, std::shared_ptr<UdpTest>> udp_tests;
  ServerStats counters;
  std::atomic<std::uint64_t> datagrams_ignored{0};

  explicit Impl(ServerOptions o) : options(std::move(o)) {}

  void bind_sockets();
  void accept_loop();
  void udp_loop();
  void reap_finished();
  void run_worker(int fd, std::uint64_t id);
  void serve(int fd);
  void serve_control(int fd, Reader& hello);
  void serve_data(int fd, Reader& hello);
  void bulk_start(int fd, Session& session, const Frame& frame);
  void bulk_end(int fd, Session& session);
  void udp_start(int fd, Session& session, const Frame& frame);
  void udp_end(int fd, Session& session, const Frame& frame);
  bool sleep_unless_stopping(std::chrono::nanoseconds duration) const;
};

void Server::Impl::bind_sockets() {
  std::vector<std::string> candidates;
  if (options.bind_address.empty()) {
    candidates = {"::", "0.0.0.0"};
  } else {
    candidates = {options.bind_address};
  }
  std::string failures;
  for (const std::string& host : candidates) {
    std::vector<detail::Endpoint> endpoints;
    try {
      endpoints = detail::resolve(host, options.port, true);
    } catch (const ProbeError& e) {
      failures += std::string(failures.empty() ? "" : "; ") + e.what();
      continue;
    }
    for (const detail::Endpoint& endpoint : endpoints) {
      // With port 0 the TCP port is the OS's choice, and UDP must get the
      // same number; retry a few times if that UDP port happens to be taken.
      for (int attempt = 0; attempt < 8; ++attempt) {
        Fd tcp(::socket(endpoint.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP));
        if (!tcp.valid()) {
          failures += "; socket: " + detail::os_error(errno);
          break;
        }
        const int on = 1;
        const int off = 0;
        ::setsockopt(tcp.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        if (endpoint.family() == AF_INET6) ::setsockopt(tcp.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        if (::bind(tcp.get(), endpoint.addr(), endpoint.length) != 0 || ::listen(tcp.get(), 128) != 0) {
          failures += std::string(failures.empty() ? "" : "; ") + "bind " + endpoint.numeric_host() + " port " +
                      std::to_string(options.port) + ": " + detail::os_error(errno);
          break;
        }
        detail::Endpoint actual;
        actual.length = sizeof actual.storage;
        ::getsockname(tcp.get(), reinterpret_cast<sockaddr*>(&actual.storage), &actual.length);

        Fd dgram(::socket(endpoint.family(), SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP));
        if (endpoint.family() == AF_INET6) ::setsockopt(dgram.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        ::setsockopt(dgram.get(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
        const int rcvbuf = 8 << 20;
        ::setsockopt(dgram.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        if (dgram.valid() && ::bind(dgram.get(), actual.addr(), actual.length) == 0) {
          listener = std::move(tcp);
          udp = std::move(dgram);
          bound = actual;
          return;
        }
        const int error = errno;
        if (options.port != 0) {
          failures += std::string(failures.empty() ? "" : "; ") + "bind UDP port " + std::to_string(options.port) +
                      ": " + detail::os_error(error);
          break;
        }
      }
    }
  }
  throw ProbeError("probe server cannot listen: " + failures);
}

void Server::Impl::reap_finished() {
  std::vector<std::thread> done;
  {
    std::lock_guard lock(mu);
    for (const std::uint64_t id : finished_workers) {
      auto it = workers.find(id);
      if (it != workers.end()) {
        done.push_back(std::move(it->second));
        workers.erase(it);
      }
    }
    finished_workers.clear();
  }
  for (std::thread& t : done) t.join();
}

void Server::Impl::accept_loop() {
  while (!stopping.load()) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(kPollInterval.count()));
    reap_finished();
    if (stopping.load()) break;
    if (ready <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let connections drain
      }
      continue;
    }
    std::unique_lock lock(mu);
    ++counters.connections_accepted;
    if (counters.active_connections >= options.max_connections) {
      ++counters.rejected_busy;
      lock.unlock();
      // Best effort, never blocking the acceptor: the peer learns why.
      const auto frame = [] {
        Writer w;
        w.u16(static_cast<std::uint16_t>(ErrorCode::Busy)).text("server busy: too many connections");
        return detail::encode_frame(FrameType::Error, w.data());
      }();
      (void)::send(conn.get(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      continue;
    }
    const int fd = conn.get();
    const std::uint64_t id = next_worker++;
    try {
      workers.emplace(id, std::thread([this, fd, id] { run_worker(fd, id); }));
    } catch (const std::system_error&) {
      ++counters.rejected_busy;
      continue;  // no thread to be had: drop this connection, keep serving
    }
    (void)conn.release();
    open_fds.insert(fd);
    ++counters.active_connections;
    counters.peak_connections = std::max(counters.peak_connections, counters.active_connections);
  }
}

void Server::Impl::run_worker(int fd, std::uint64_t id) {
  {
    // The acceptor registers the fd right after starting this thread.
    std::lock_guard lock(mu);
  }
  std::optional<ErrorCode> outcome;
  bool failed = false;
  try {
    serve(fd);
  } catch (const Rejected& r) {
    outcome = r.code;
  } catch (...) {
    failed = true;  // garbage, truncated frames, timeouts, vanished peers
  }
  std::lock_guard lock(mu);
  if (outcome == ErrorCode::Authentication) {
    ++counters.auth_failures;
  } else if (outcome == ErrorCode::Busy) {
    ++counters.rejected_busy;
  } else if (outcome || failed) {
    ++counters.protocol_errors;
  }
  open_fds.erase(fd);
  ::close(fd);  // under the lock, so close() never shuts down a reused number
  --counters.active_connections;
  finished_workers.push_back(id);
}

void Server::Impl::serve(int fd) {
  const auto handshake = to_ns(options.handshake_timeout);
  detail::set_timeouts(fd, handshake, handshake);
  detail::FrameReader reader(fd);
  Frame frame;
  if (!reader.next(frame)) return;  // connected and left: nothing to answer
  if (frame.type != FrameType::Hello) reject(fd, ErrorCode::BadRequest, "expected HELLO");
  Reader r(frame.payload);
  try {
    const auto magic = r.bytes(detail::kHelloMagic.size());
    if (!std::equal(magic.begin(), magic.end(), detail::kHelloMagic.begin())) {
      reject(fd, ErrorCode::BadRequest, "not an exogpu network probe client");
    }
    const auto version = r.u16();
    if (version != kProtocolVersion) {
      reject(fd, ErrorCode::Version,
             "protocol version " + std::to_string(version) + " not supported; this server speaks " +
                 std::to_string(kProtocolVersion));
    }
    const auto role = static_cast<detail::Role>(r.u16());
    if (role == detail::Role::Control) {
      serve_control(fd, r);
    } else if (role == detail::Role::Data) {
      serve_data(fd, r);
    } else {
      reject(fd, ErrorCode::BadRequest, "unknown connection role");
    }
  } catch (const ProbeError& e) {
    reject(fd, ErrorCode::BadRequest, e.what());  // a truncated HELLO or request
  }
}

void Server::Impl::serve_control(int fd, Reader& hello) {
  const auto token_length = hello.u16();
  if (token_length > detail::kMaxTokenBytes) reject(fd, ErrorCode::BadRequest, "token too long");
  const auto token = hello.bytes(token_length);
  if (!detail::constant_time_equal(std::as_bytes(std::span(options.token)), token)) {
    reject(fd, ErrorCode::Authentication, "token rejected");
  }
  auto session = std::make_shared<Session>();
  detail::fill_random(session->cookie);
  {
    std::lock_guard lock(mu);
    if (counters.active_sessions >= options.max_sessions) {
      // reject() writes to the socket: do it without holding the lock.
    } else {
      ++counters.active_sessions;
      ++counters.sessions_started;
      do {
        std::array<std::byte, 4> raw{};
        detail::fill_random(raw);
        session->id = Reader(raw).u32();
      } while (session->id == 0 || sessions.contains(session->id));
      sessions.emplace(session->id, session);
    }
  }
  if (session->id == 0) {
    reject(fd, ErrorCode::Busy,
           "server busy: " + std::to_string(options.max_sessions) + " sessions already running");
  }
  struct Unregister {
    Impl& impl;
    std::uint32_t id;
    ~Unregister() {
      std::lock_guard lock(impl.mu);
      impl.sessions.erase(id);
      impl.udp_tests.erase(id);
      --impl.counters.active_sessions;
    }
  } unregister{*this, session->id};

  Writer welcome;
  welcome.u16(kProtocolVersion)
      .u32(session->id)
      .bytes(session->cookie)
      .f64(options.max_test_seconds)
      .u64(options.max_test_bytes)
      .u16(static_cast<std::uint16_t>(options.max_streams))
      .f64(options.max_udp_rate_bps)
      .u64(options.max_udp_packets);
  detail::write_frame(fd, FrameType::Welcome, welcome.data());
  detail::set_nodelay(fd);
  const auto idle = to_ns(options.idle_timeout);
  detail::set_timeouts(fd, idle, idle);

  detail::FrameReader reader(fd);
  Frame frame;
  while (!stopping.load()) {
    if (!reader.next(frame)) throw ProbeError("client left without BYE");
    switch (frame.type) {
      case FrameType::Ping:
        if (frame.payload.size() != 8) reject(fd, ErrorCode::BadRequest, "PING carries 8 bytes");
        detail::write_frame(fd, FrameType::Pong, frame.payload);
        break;
      case FrameType::BulkStart:
        bulk_start(fd, *session, frame);
        break;
      case FrameType::BulkEnd:
        bulk_end(fd, *session);
        break;
      case FrameType::UdpStart:
        udp_start(fd, *session, frame);
        break;
      case FrameType::UdpEnd:
        udp_end(fd, *session, frame);
        break;
      case FrameType::Bye: {
        {
          // Counted before the reply, so a client that saw it sees the count.
          std::lock_guard lock(mu);
          ++counters.sessions_completed;
        }
        detail::write_frame(fd, FrameType::Ok);
        return;
      }
      default:
        reject(fd, ErrorCode::BadRequest,
               "unexpected frame type " + std::to_string(static_cast<unsigned>(frame.type)));
    }
  }
}

void Server::Impl::bulk_start(int fd, Session& session, const Frame& frame) {
  Reader r(frame.payload);
  const unsigned streams = r.u16();
  const double seconds = r.f64();
  if (streams < 1 || streams > options.max_streams) {
    reject(fd, ErrorCode::Limit, "streams must be 1 to " + std::to_string(options.max_streams));
  }
  if (!(seconds > 0) || !(seconds <= options.max_test_seconds)) {
    reject(fd, ErrorCode::Limit,
           "test length must be above 0 and at most " + std::to_string(options.max_test_seconds) + " s");
  }
  auto test = std::make_shared<BulkTest>();
  test->expected_streams = streams;
  test->max_bytes = options.max_test_bytes;
  test->deadline = Clock::now() + to_ns(options.handshake_timeout) + to_ns(seconds) + kBulkGrace;
  {
    std::lock_guard lock(session.mu);
    if (session.bulk) reject(fd, ErrorCode::BadRequest, "a bulk test is already running");
    session.bulk = test;
  }
  detail::write_frame(fd, FrameType::Ok);
}

void Server::Impl::bulk_end(int fd, Session& session) {
  std::shared_ptr<BulkTest> test;
  {
    std::lock_guard lock(session.mu);
    test = std::move(session.bulk);
  }
  if (!test) reject(fd, ErrorCode::BadRequest, "no bulk test running");
  std::unique_lock lock(test->mu);
  // Streams end on the sender's FIN, their own deadline, or close().
  const auto all_done = [&] {
    return test->joined == test->expected_streams && test->finished == test->joined;
  };
  while (!all_done() && !stopping.load() && Clock::now() < test->deadline + std::chrono::seconds(1)) {
    test->cv.wait_for(lock, kPollInterval);
  }
  double elapsed = 0;
  if (test->first && test->last) elapsed = std::chrono::duration<double>(*test->last - *test->first).count();
  Writer w;
  w.u64(test->bytes.load())
      .f64(elapsed)
      .u16(static_cast<std::uint16_t>(test->joined))
      .u16(static_cast<std::uint16_t>(test->finished))
      .u8(test->capped ? 1 : 0);
  lock.unlock();
  detail::write_frame(fd, FrameType::BulkResult, w.data());
}

void Server::Impl::serve_data(int fd, Reader& hello) {
  const std::uint32_t id = hello.u32();
  const auto cookie = hello.bytes(detail::kCookieBytes);
  (void)hello.u16();  // stream index: informational
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mu);
    auto it = sessions.find(id);
    if (it != sessions.end()) session = it->second;
  }
  if (!session || !detail::constant_time_equal(session->cookie, cookie)) {
    reject(fd, ErrorCode::Authentication, "unknown session");
  }
  std::shared_ptr<BulkTest> test;
  {
    std::lock_guard lock(session->mu);
    test = session->bulk;
  }
  if (!test) reject(fd, ErrorCode::BadRequest, "no bulk test running");
  {
    std::lock_guard lock(test->mu);
    if (test->joined >= test->expected_streams) {
      // reject() below, outside the lock.
      test.reset();
    } else {
      ++test->joined;
    }
  }
  if (!test) reject(fd, ErrorCode::Limit, "every stream of this test has already joined");

  std::optional<Clock::time_point> first;
  std::optional<Clock::time_point> last;
  bool capped = false;
  // Mark the stream finished however it ends, so bulk_end never waits for it.
  struct Finish {
    BulkTest& t;
    std::optional<Clock::time_point>& first;
    std::optional<Clock::time_point>& last;
    bool& capped;
    ~Finish() {
      std::lock_guard lock(t.mu);
      if (first && (!t.first || *first < *t.first)) t.first = first;
      if (last && (!t.last || *last > *t.last)) t.last = last;
      t.capped = t.capped || capped;
      ++t.finished;
      t.cv.notify_all();
    }
  } finish{*test, first, last, capped};

  detail::write_frame(fd, FrameType::Ok);
  detail::set_timeouts(fd, kPollInterval, to_ns(options.handshake_timeout));
  std::vector<std::byte> buffer(kBulkReceiveBytes);
  while (true) {
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
    const auto now = Clock::now();
    if (n > 0) {
      if (!first) first = now;
      last = now;
      const auto total = test->bytes.fetch_add(static_cast<std::uint64_t>(n)) + static_cast<std::uint64_t>(n);
      if (total > test->max_bytes) {
        capped = true;
        break;
      }
      if (now > test->deadline) break;
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && !stopping.load() && now <= test->deadline) continue;
    break;
  }
}

void Server::Impl::udp_start(int fd, Session& session, const Frame& frame) {
  Reader r(frame.payload);
  const double rate = r.f64();
  const unsigned size = r.u16();
  const double seconds = r.f64();
  if (!(rate > 0) || !(rate <= options.max_udp_rate_bps)) {
    reject(fd, ErrorCode::Limit, "UDP rate must be above 0 and at most " + std::to_string(options.max_udp_rate_bps) +
                                     " bit/s");
  }
  if (size < detail::kDatagramHeaderBytes || size > detail::kMaxDatagramBytes) {
    reject(fd, ErrorCode::Limit, "UDP packet size must be 32 to 65000 bytes");
  }
  if (!(seconds > 0) || !(seconds <= options.max_test_seconds)) {
    reject(fd, ErrorCode::Limit,
           "test length must be above 0 and at most " + std::to_string(options.max_test_seconds) + " s");
  }
  const double packets = std::ceil(rate * seconds / (8.0 * size)) + 64;
  if (packets > static_cast<double>(options.max_udp_packets)) {
    reject(fd, ErrorCode::Limit,
           "UDP test of " + std::to_string(static_cast<std::uint64_t>(packets)) + " packets exceeds the limit of " +
               std::to_string(options.max_udp_packets));
  }
  std::array<std::byte, 8> raw{};
  detail::fill_random(raw);
  const std::uint64_t key = Reader(raw).u64();
  auto test = std::make_shared<UdpTest>(key, static_cast<std::uint64_t>(packets));
  {
    std::lock_guard lock(mu);
    udp_tests[session.id] = std::move(test);
  }
  Writer w;
  w.u64(key).u16(bound.port());
  detail::write_frame(fd, FrameType::Ok, w.data());
}

bool Server::Impl::sleep_unless_stopping(std::chrono::nanoseconds duration) const {
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
    if (stopping.load()) return false;
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(end - Clock::now(), std::chrono::milliseconds(20)));
  }
  return true;
}

void Server::Impl::udp_end(int fd, Session& session, const Frame& frame) {
  Reader r(frame.payload);
  const std::uint64_t sent = r.u64();
  const double drain = std::clamp(r.f64(), 0.0, kMaxUdpDrainSeconds);
  std::shared_ptr<UdpTest> test;
  {
    std::lock_guard lock(mu);
    auto it = udp_tests.find(session.id);
    if (it != udp_tests.end()) test = it->second;
  }
  if (!test) reject(fd, ErrorCode::BadRequest, "no UDP test running");
  (void)sleep_unless_stopping(to_ns(drain));  // datagrams still in flight
  {
    std::lock_guard lock(mu);
    udp_tests.erase(session.id);
  }
  Writer w;
  {
    std::lock_guard lock(test->mu);
    w.u64(test->tracker.received_below(sent))
        .u64(test->tracker.duplicates())
        .u64(test->tracker.reordered())
        .u64(test->tracker.out_of_range())
        .f64(test->jitter.jitter_ns());
  }
  detail::write_frame(fd, FrameType::UdpResult, w.data());
}

void Server::Impl::udp_loop() {
  constexpr std::size_t kBatch = 64;
  constexpr std::size_t kKeep = 64;  // only the header matters; the rest is truncated
  std::array<std::array<std::byte, kKeep>, kBatch> buffers{};
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> msgs{};
  alignas(cmsghdr) std::array<std::array<std::byte, CMSG_SPACE(sizeof(timespec))>, kBatch> controls{};
  std::uint32_t cached_id = 0;
  std::shared_ptr<UdpTest> cached;
  while (!stopping.load()) {
    pollfd fds[2] = {{udp.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    if (::poll(fds, 2, static_cast<int>(kPollInterval.count())) <= 0) continue;
    if ((fds[0].revents & POLLIN) == 0) continue;
    for (std::size_t i = 0; i < kBatch; ++i) {
      iov[i] = {buffers[i].data(), kKeep};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_control = controls[i].data();
      msgs[i].msg_hdr.msg_controllen = controls[i].size();
    }
    const int n = ::recvmmsg(udp.get(), msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n <= 0) continue;
    const std::int64_t fallback_ns = realtime_ns();
    for (int i = 0; i < n; ++i) {
      if (msgs[static_cast<std::size_t>(i)].msg_len < detail::kDatagramHeaderBytes) {
        datagrams_ignored.fetch_add(1);
        continue;
      }
      Reader r{std::span<const std::byte>(buffers[static_cast<std::size_t>(i)]).first(detail::kDatagramHeaderBytes)};
      const auto magic = r.u32();
      const auto id = r.u32();
      const auto key = r.u64();
      const auto seq = r.u64();
      const auto send_ns = static_cast<std::int64_t>(r.u64());
      std::int64_t receive_ns = fallback_ns;
      msghdr& h = msgs[static_cast<std::size_t>(i)].msg_hdr;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          timespec ts{};
          std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
          receive_ns = static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
        }
      }
      if (magic != detail::kDatagramMagic) {
        datagrams_ignored.fetch_add(1);
        continue;
      }
      if (!cached || cached_id != id || cached->key != key) {
        std::lock_guard lock(mu);
        auto it = udp_tests.find(id);
        cached = it == udp_tests.end() ? nullptr : it->second;
        cached_id = id;
      }
      if (!cached || cached->key != key) {
        datagrams_ignored.fetch_add(1);
        continue;
      }
      std::lock_guard lock(cached->mu);
      if (cached->tracker.add(seq)) cached->jitter.add(send_ns, receive_ns);
    }
    // Drop the cache if its test has ended, so its memory goes.
    if (cached && cached.use_count() == 1) cached.reset();
  }
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  validate(impl_->options);
  impl_->wake = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!impl_->wake.valid()) throw ProbeError("eventfd: " + detail::os_error(errno));
  impl_->bind_sockets();
  impl_->acceptor = std::thread([impl = impl_.get()] { impl->accept_loop(); });
  try {
    impl_->udp_receiver = std::thread([impl = impl_.get()] { impl->udp_loop(); });
  } catch (...) {
    close();
    throw;
  }
}

Server::~Server() { close(); }

void Server::close() noexcept {
  Impl& impl = *impl_;
  if (impl.closed.exchange(true)) return;
  impl.stopping.store(true);
  const std::uint64_t one = 1;
  (void)!::write(impl.wake.get(), &one, sizeof one);
  if (impl.acceptor.joinable()) impl.acceptor.join();
  if (impl.udp_receiver.joinable()) impl.udp_receiver.join();
  std::unordered_map<std::uint64_t, std::thread> workers;
  {
    std::lock_guard lock(impl.mu);
    for (const int fd : impl.open_fds) ::shutdown(fd, SHUT_RDWR);
    workers.swap(impl.workers);
  }
  for (auto& [id, t] : workers) t.join();
  impl.listener.reset();
  impl.udp.reset();
}

bool Server::running() const noexcept { return !impl_->closed.load(); }

std::uint16_t Server::port() const noexcept { return impl_->bound.port(); }

std::string Server::address() const { return impl_->bound.numeric_host(); }

ServerStats Server::stats() const {
  std::lock_guard lock(impl_->mu);
  ServerStats out = impl_->counters;
  out.datagrams_ignored = impl_->datagrams_ignored.load();
  return out;
}

}  // namespace exogpu::net
