// The network probe speaks BSD sockets with Linux's TCP_INFO and eventfd;
// on Windows it is not ported yet, and says so instead of failing to build.
#include "exogpu/netprobe.hpp"

namespace exogpu::net {

namespace {

[[noreturn]] void unavailable() {
  throw ProbeError("the network probe is not available on Windows yet (it needs a Winsock port)");
}

}  // namespace

struct Server::Impl {};

Server::Server(ServerOptions) { unavailable(); }
Server::~Server() = default;
void Server::close() noexcept {}
bool Server::running() const noexcept { return false; }
std::uint16_t Server::port() const noexcept { return 0; }
std::string Server::address() const { return {}; }
ServerStats Server::stats() const { return {}; }

NetResult run_probe(const ClientOptions&) { unavailable(); }

}  // namespace exogpu::net
