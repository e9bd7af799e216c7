// Network probe: estimators against closed forms, and a real server and
// client on loopback, including the inputs a hostile client would send.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "exogpu/netprobe.hpp"

namespace {

using namespace exogpu::net;

ServerOptions loopback_options(const std::string& address = "127.0.0.1") {
  ServerOptions o;
  o.bind_address = address;
  o.token = "correct horse battery staple";
  o.handshake_timeout = 1;
  o.idle_timeout = 5;
  return o;
}

ClientOptions quick_client(const Server& server, const std::string& host = "127.0.0.1") {
  ClientOptions c;
  c.host = host;
  c.port = server.port();
  c.token = "correct horse battery staple";
  c.seconds = 0.3;
  c.streams = 2;
  c.udp_rate_bps = 20e6;
  c.rtt_seconds = 0.2;
  c.rtt_samples = 200;
  return c;
}

// A raw TCP connection to the server, for sending what no client would.
int raw_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads until the server closes; returns the bytes it sent before that.
std::size_t drain_until_closed(int fd) {
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::size_t total = 0;
  char buffer[512];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return n == 0 ? total : static_cast<std::size_t>(-1);
    total += static_cast<std::size_t>(n);
  }
}

template <typename Pred>
bool eventually(Pred pred) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

TEST(JitterEstimator, ConstantTransitHasNoJitter) {
  JitterEstimator j;
  for (int i = 0; i < 100; ++i) j.add(i * 1000, i * 1000 + 5'000'000);  // any fixed offset
  EXPECT_EQ(j.jitter_ns(), 0.0);
}

TEST(JitterEstimator, MatchesTheClosedFormForAlternatingDelay) {
  // Transit alternates between 0 and d: every |D| is d, so after n packets
  // J = d * (1 - (15/16)^(n-1)).
  JitterEstimator j;
  const double d = 4000;
  const int n = 50;
  for (int i = 0; i < n; ++i) j.add(i * 1'000'000, i * 1'000'000 + (i % 2) * static_cast<std::int64_t>(d));
  EXPECT_NEAR(j.jitter_ns(), d * (1 - std::pow(15.0 / 16.0, n - 1)), 1e-6);
}

TEST(SequenceTracker, SeparatesLossReorderingAndDuplicates) {
  SequenceTracker t(8);
  for (const std::uint64_t seq : {0, 1, 3, 2, 2, 5, 7, 6, 9}) t.add(seq);
  EXPECT_EQ(t.received(), 7U);       // 0 1 2 3 5 6 7
  EXPECT_EQ(t.duplicates(), 1U);     // the second 2
  EXPECT_EQ(t.reordered(), 2U);      // 2 after 3, 6 after 7
  EXPECT_EQ(t.out_of_range(), 1U);   // 9 >= capacity
  EXPECT_EQ(t.received_below(8), 7U);
  EXPECT_EQ(t.received_below(4), 4U);
  EXPECT_EQ(8U - t.received_below(8), 1U);  // 4 lost
}

TEST(SummarizeRtt, NearestRankPercentiles) {
  std::vector<double> samples;
  for (int i = 100; i >= 1; --i) samples.push_back(i);
  const RttStats s = summarize_rtt(samples);
  EXPECT_EQ(s.samples, 100U);
  EXPECT_EQ(s.min_us, 1);
  EXPECT_EQ(s.max_us, 100);
  EXPECT_EQ(s.median_us, 50.5);
  EXPECT_EQ(s.p99_us, 99);
  EXPECT_EQ(s.mean_us, 50.5);
}

TEST(NetProbe, LoopbackIPv4MeasuresEverything) {
  Server server(loopback_options());
  ASSERT_NE(server.port(), 0);
  const NetResult r = run_probe(quick_client(server));
  EXPECT_EQ(r.address, "127.0.0.1");
  ASSERT_TRUE(r.bandwidth_bps.has_value());
  EXPECT_GT(*r.bandwidth_bps, 1e8);  // any loopback moves more than 100 Mbit/s
  EXPECT_GT(r.bulk_bytes, 0U);
  EXPECT_NEAR(*r.bandwidth_bps, static_cast<double>(r.bulk_bytes) * 8 / r.bulk_elapsed_seconds, 1.0);
  EXPECT_LE(r.bulk_elapsed_seconds, 0.3 + 0.2);
  ASSERT_TRUE(r.retransmits.has_value());
  ASSERT_TRUE(r.rtt.has_value());
  EXPECT_GT(r.rtt->samples, 10U);
  EXPECT_GT(r.rtt->min_us, 0);
  EXPECT_LE(r.rtt->min_us, r.rtt->median_us);
  EXPECT_LE(r.rtt->median_us, r.rtt->p99_us);
  ASSERT_TRUE(r.udp.has_value());
  // 20 Mbit/s of 1200-byte datagrams for 0.3 s is 625 datagrams.
  EXPECT_NEAR(static_cast<double>(r.udp->sent), 625, 10);
  EXPECT_EQ(r.udp->lost + r.udp->received, r.udp->sent);
  EXPECT_LT(r.udp->loss, 0.02);
  EXPECT_GE(r.udp->jitter_us, 0);
  EXPECT_EQ(r.udp->duplicates, 0U);
  EXPECT_TRUE(eventually([&] { return server.stats().sessions_completed == 1; }));
}

TEST(NetProbe, LoopbackIPv6) {
  std::unique_ptr<Server> server;
  try {
    server = std::make_unique<Server>(loopback_options("::1"));
  } catch (const ProbeError& e) {
    GTEST_SKIP() << "no IPv6 loopback: " << e.what();
  }
  ClientOptions c = quick_client(*server, "::1");
  c.streams = 1;
  const NetResult r = run_probe(c);
  EXPECT_EQ(r.address, "::1");
  EXPECT_TRUE(r.bandwidth_bps.has_value());
  ASSERT_TRUE(r.udp.has_value());
  EXPECT_GT(r.udp->received, 0U);
}

TEST(NetProbe, DualStackServerTakesIPv4AndHostnames) {
  ServerOptions o = loopback_options("");
  Server server(o);
  ClientOptions c = quick_client(server, "localhost");
  c.streams = 0;
  c.udp_rate_bps = 0;
  const NetResult r = run_probe(c);
  EXPECT_TRUE(r.rtt.has_value());
  EXPECT_FALSE(r.bandwidth_bps.has_value());
  EXPECT_FALSE(r.udp.has_value());
}

TEST(NetProbe, WrongTokenIsRefusedAndTheServerKeepsServing) {
  Server server(loopback_options());
  ClientOptions bad = quick_client(server);
  bad.token = "correct horse battery stapler";
  EXPECT_THROW((void)run_probe(bad), AuthenticationError);
  bad.token = "c";
  EXPECT_THROW((void)run_probe(bad), AuthenticationError);
  EXPECT_TRUE(eventually([&] { return server.stats().auth_failures == 2; }));
  ClientOptions good = quick_client(server);
  good.streams = 1;
  EXPECT_TRUE(run_probe(good).bandwidth_bps.has_value());
  EXPECT_EQ(server.stats().sessions_started, 1U);
}

TEST(NetProbe, GarbageAndTruncatedFramesAreDropped) {
  Server server(loopback_options());
  {
    // Random bytes: not a frame header the server accepts.
    const int fd = raw_connect(server.port());
    ASSERT_GE(fd, 0);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_GT(::send(fd, junk, sizeof junk, MSG_NOSIGNAL), 0);
    EXPECT_NE(drain_until_closed(fd), static_cast<std::size_t>(-1));
    ::close(fd);
  }
  {
    // A header announcing a 4 GiB payload.
    const int fd = raw_connect(server.port());
    const unsigned char header[8] = {0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff};
    ASSERT_EQ(::send(fd, header, sizeof header, MSG_NOSIGNAL), 8);
    EXPECT_NE(drain_until_closed(fd), static_cast<std::size_t>(-1));
    ::close(fd);
  }
  {
    // A HELLO cut short, then silence: the handshake timeout closes it.
    const int fd = raw_connect(server.port());
    const unsigned char partial[10] = {0, 1, 0, 0, 0, 0, 0, 40, 'E', 'X'};
    ASSERT_EQ(::send(fd, partial, sizeof partial, MSG_NOSIGNAL), 10);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_NE(drain_until_closed(fd), static_cast<std::size_t>(-1));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
    ::close(fd);
  }
  {
    // A well-formed HELLO whose token length runs past the frame.
    const int fd = raw_connect(server.port());
    const unsigned char hello[18] = {0, 1, 0, 0, 0, 0, 0, 10, 'E', 'X', 'N', 'P', 0, 1, 0, 1, 0, 200};
    ASSERT_EQ(::send(fd, hello, sizeof hello, MSG_NOSIGNAL), 18);
    EXPECT_GT(drain_until_closed(fd), 0U);  // an ERROR frame, then close
    ::close(fd);
  }
  EXPECT_TRUE(eventually([&] { return server.stats().protocol_errors == 4; }));
  EXPECT_TRUE(eventually([&] { return server.stats().active_connections == 0; }));
  EXPECT_TRUE(run_probe(quick_client(server)).bandwidth_bps.has_value());
}

TEST(NetProbe, ConnectionFloodIsBoundedAndServingResumes) {
  ServerOptions o = loopback_options();
  o.max_connections = 4;
  Server server(o);
  std::vector<int> flood;
  for (int i = 0; i < 20; ++i) flood.push_back(raw_connect(server.port()));
  EXPECT_TRUE(eventually([&] { return server.stats().connections_accepted == 20; }));
  const ServerStats during = server.stats();
  EXPECT_EQ(during.peak_connections, 4U);
  EXPECT_EQ(during.rejected_busy, 16U);
  for (const int fd : flood) ::close(fd);
  EXPECT_TRUE(eventually([&] { return server.stats().active_connections == 0; }));
  ClientOptions c = quick_client(server);
  c.streams = 2;  // control + 2 streams fit in 4
  EXPECT_TRUE(run_probe(c).bandwidth_bps.has_value());
}

TEST(NetProbe, LimitsAreEnforcedWithClearErrors) {
  ServerOptions o = loopback_options();
  o.max_streams = 2;
  o.max_test_seconds = 1;
  Server server(o);
  ClientOptions c = quick_client(server);
  c.streams = 3;
  try {
    (void)run_probe(c);
    FAIL() << "3 streams accepted by a server allowing 2";
  } catch (const ProbeError& e) {
    EXPECT_NE(std::string(e.what()).find("streams must be 1 to 2"), std::string::npos) << e.what();
  }
  c.streams = 1;
  c.seconds = 2;
  EXPECT_THROW((void)run_probe(c), ProbeError);
}

TEST(NetProbe, BadOptionsAreRejectedBeforeAnythingHappens) {
  ServerOptions o;
  EXPECT_THROW(Server{o}, exogpu::InvalidArgument);  // no token
  ClientOptions c;
  c.host = "127.0.0.1";
  c.port = 1;
  c.token = "t";
  c.seconds = -1;
  EXPECT_THROW((void)run_probe(c), exogpu::InvalidArgument);
  c.seconds = 1;
  c.udp_packet_size = 8;
  EXPECT_THROW((void)run_probe(c), exogpu::InvalidArgument);
  c.udp_packet_size = 1200;
  c.host = "no-such-host.invalid";
  EXPECT_THROW((void)run_probe(c), ProbeError);
}

TEST(NetProbe, CloseStopsAServerWithClientsAttached) {
  auto server = std::make_unique<Server>(loopback_options());
  const int idle = raw_connect(server->port());
  const auto start = std::chrono::steady_clock::now();
  server->close();
  EXPECT_FALSE(server->running());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  server->close();  // idempotent
  ::close(idle);
}

}  // namespace
