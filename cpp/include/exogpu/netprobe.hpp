// Network probe: a token-guarded server and a client that measures TCP bulk
// throughput over parallel streams, round-trip time by TCP ping-pong, and
// UDP jitter (RFC 3550) and loss at a given rate.
//
// The server runs on its own threads (one acceptor, one UDP receiver, one per
// connection, all bounded) and stops on close() or destruction. Every test is
// bounded in duration and bytes; connections that stall, vanish or send
// malformed frames are closed without affecting the others.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "exogpu/error.hpp"

namespace exogpu::net {

inline constexpr std::uint16_t kProtocolVersion = 1;

// A test could not be run: no route, refused, timed out, protocol violation.
class ProbeError : public std::runtime_error, public Error {
 public:
  explicit ProbeError(const std::string& message) : std::runtime_error(message), Error(message) {}
};

// The server rejected the token.
class AuthenticationError : public ProbeError {
 public:
  using ProbeError::ProbeError;
};

struct ServerOptions {
  std::string bind_address;      // empty: "::" dual-stack, else 0.0.0.0 if IPv6 is off
  std::uint16_t port = 0;        // 0: the OS picks one (see Server::port())
  std::string token;             // 1..256 bytes, required
  unsigned max_sessions = 4;     // concurrent control connections past the handshake
  unsigned max_connections = 64; // every open TCP connection, handshakes included
  unsigned max_streams = 16;     // parallel bulk streams per test
  double max_test_seconds = 60;  // longest bulk or UDP test
  std::uint64_t max_test_bytes = std::uint64_t{1} << 40;  // bytes per bulk test
  double max_udp_rate_bps = 10e9;
  std::uint64_t max_udp_packets = std::uint64_t{1} << 24;
  double handshake_timeout = 5;  // seconds for a new connection to say HELLO
  double idle_timeout = 30;      // seconds a session may stay silent
};

struct ServerStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t sessions_started = 0;
  std::uint64_t sessions_completed = 0;  // ended with BYE
  std::uint64_t auth_failures = 0;
  std::uint64_t protocol_errors = 0;     // garbage, truncated or oversized frames, timeouts
  std::uint64_t rejected_busy = 0;       // over max_connections or max_sessions
  std::uint64_t datagrams_ignored = 0;   // UDP not belonging to a running test
  unsigned active_connections = 0;
  unsigned active_sessions = 0;
  unsigned peak_connections = 0;
};

class Server {
 public:
  // Binds, listens and starts serving. Throws InvalidArgument for bad options
  // and ProbeError when the address cannot be bound.
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  Server(Server&&) = delete;
  Server& operator=(Server&&) = delete;

  // Stops accepting, cuts every connection and joins every thread. Idempotent.
  void close() noexcept;
  [[nodiscard]] bool running() const noexcept;
  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] std::string address() const;  // numeric bound address
  [[nodiscard]] ServerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ClientOptions {
  std::string host;
  std::uint16_t port = 0;
  std::string token;
  double seconds = 3;              // length of the bulk test and of the UDP test
  unsigned streams = 1;            // parallel TCP streams; 0 skips the bulk test
  double udp_rate_bps = 10e6;      // UDP send rate; 0 skips the UDP test
  unsigned udp_packet_size = 1200; // bytes of UDP payload per datagram
  double rtt_seconds = 1;          // time budget of the ping-pong; 0 skips it
  unsigned rtt_samples = 1000;     // ping-pongs at most (after 5 warm-up ones)
  double connect_timeout = 5;
  int socket_buffer = 0;           // SO_SNDBUF/SO_RCVBUF; 0 keeps kernel autotuning
};

struct RttStats {
  double median_us = 0;
  double p99_us = 0;
  double min_us = 0;
  double max_us = 0;
  double mean_us = 0;
  std::size_t samples = 0;
};

struct UdpStats {
  std::uint64_t sent = 0;
  std::uint64_t received = 0;     // distinct sequence numbers that arrived
  std::uint64_t lost = 0;         // sent - received
  std::uint64_t reordered = 0;    // arrived after a higher sequence number
  std::uint64_t duplicates = 0;
  double loss = 0;                // lost / sent
  double jitter_us = 0;           // RFC 3550 interarrival jitter at the end of the test
  double rate_bps = 0;            // requested rate
  double achieved_rate_bps = 0;   // what the sender managed (payload bits)
  unsigned packet_size = 0;
  double seconds = 0;
};

struct NetResult {
  std::string host;
  std::string address;            // numeric address actually used
  std::uint16_t port = 0;
  unsigned streams = 0;
  double seconds = 0;             // requested test length
  std::optional<double> bandwidth_bps;  // received payload bits / receiver's elapsed time
  std::uint64_t bulk_bytes = 0;
  double bulk_elapsed_seconds = 0;      // server's first byte to last byte
  std::optional<std::uint64_t> retransmits;  // sum over streams, from TCP_INFO
  std::optional<RttStats> rtt;
  std::optional<UdpStats> udp;
};

// Runs the tests ClientOptions selects against a server. Blocks for about
// rtt_seconds + 2 * seconds. Throws InvalidArgument for bad options,
// AuthenticationError when the token is refused, ProbeError otherwise.
[[nodiscard]] NetResult run_probe(const ClientOptions& options);

// RFC 3550 section 6.4.1 interarrival jitter: for consecutive packets i, j,
// D = (Rj - Ri) - (Sj - Si) and J += (|D| - J) / 16. Any clocks will do for
// send and receive times as long as each is monotonic; their offset cancels.
class JitterEstimator {
 public:
  void add(std::int64_t send_ns, std::int64_t receive_ns) noexcept;
  [[nodiscard]] double jitter_ns() const noexcept { return jitter_; }

 private:
  bool has_previous_ = false;
  std::int64_t previous_transit_ = 0;
  double jitter_ = 0;
};

// Tracks which sequence numbers of a UDP test arrived, telling duplicates
// and late (reordered) arrivals apart from loss.
class SequenceTracker {
 public:
  explicit SequenceTracker(std::uint64_t capacity);
  // Returns true when `seq` is new (first arrival within capacity).
  bool add(std::uint64_t seq);
  [[nodiscard]] std::uint64_t received() const noexcept { return received_; }
  [[nodiscard]] std::uint64_t duplicates() const noexcept { return duplicates_; }
  [[nodiscard]] std::uint64_t reordered() const noexcept { return reordered_; }
  [[nodiscard]] std::uint64_t out_of_range() const noexcept { return out_of_range_; }
  // Distinct sequence numbers below `sent` that arrived.
  [[nodiscard]] std::uint64_t received_below(std::uint64_t sent) const noexcept;

 private:
  std::vector<std::uint64_t> bits_;
  std::uint64_t capacity_;
  std::uint64_t received_ = 0;
  std::uint64_t duplicates_ = 0;
  std::uint64_t reordered_ = 0;
  std::uint64_t out_of_range_ = 0;
  std::optional<std::uint64_t> highest_;
};

// Median, 99th percentile (nearest rank), min, max and mean of samples in µs.
[[nodiscard]] RttStats summarize_rtt(std::vector<double> samples_us);

}  // namespace exogpu::net
