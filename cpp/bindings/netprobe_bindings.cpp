// Bindings of the network probe: the server object and the client call.
// Results cross as plain dicts; exogpu.netprobe wraps them in dataclasses.
// Both the client run and the server's start and close release the GIL.
#include <nanobind/stl/string.h>

#include <exception>

#include "bindings.hpp"
#include "exogpu/netprobe.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace exogpu::bindings {

namespace {

using JsonDict = nb::typed<nb::dict, nb::str, nb::any>;

PyObject* probe_error_type = nullptr;
PyObject* authentication_error_type = nullptr;

JsonDict rtt_dict(const net::RttStats& s) {
  JsonDict d;
  d["median"] = s.median_us;
  d["p99"] = s.p99_us;
  d["min"] = s.min_us;
  d["max"] = s.max_us;
  d["mean"] = s.mean_us;
  d["samples"] = s.samples;
  return d;
}

JsonDict udp_dict(const net::UdpStats& s) {
  JsonDict d;
  d["sent"] = s.sent;
  d["received"] = s.received;
  d["lost"] = s.lost;
  d["reordered"] = s.reordered;
  d["duplicates"] = s.duplicates;
  d["loss"] = s.loss;
  d["jitter_us"] = s.jitter_us;
  d["rate_bps"] = s.rate_bps;
  d["achieved_rate_bps"] = s.achieved_rate_bps;
  d["packet_size"] = s.packet_size;
  d["seconds"] = s.seconds;
  return d;
}

JsonDict result_dict(const net::NetResult& r) {
  JsonDict d;
  d["host"] = r.host;
  d["address"] = r.address;
  d["port"] = r.port;
  d["streams"] = r.streams;
  d["seconds"] = r.seconds;
  d["bandwidth_bps"] = r.bandwidth_bps ? nb::cast(*r.bandwidth_bps) : nb::none();
  d["bulk_bytes"] = r.bulk_bytes;
  d["bulk_elapsed_seconds"] = r.bulk_elapsed_seconds;
  d["retransmits"] = r.retransmits ? nb::cast(*r.retransmits) : nb::none();
  d["rtt"] = r.rtt ? nb::object(rtt_dict(*r.rtt)) : nb::none();
  d["udp"] = r.udp ? nb::object(udp_dict(*r.udp)) : nb::none();
  return d;
}

JsonDict stats_dict(const net::ServerStats& s) {
  JsonDict d;
  d["connections_accepted"] = s.connections_accepted;
  d["sessions_started"] = s.sessions_started;
  d["sessions_completed"] = s.sessions_completed;
  d["auth_failures"] = s.auth_failures;
  d["protocol_errors"] = s.protocol_errors;
  d["rejected_busy"] = s.rejected_busy;
  d["datagrams_ignored"] = s.datagrams_ignored;
  d["active_connections"] = s.active_connections;
  d["active_sessions"] = s.active_sessions;
  d["peak_connections"] = s.peak_connections;
  return d;
}

PyObject* new_exception(nb::module_& m, const char* name, const char* doc, PyObject* bases) {
  // Named after the module as the stub generator imports it; exogpu.netprobe
  // presents them under its own name.
  const std::string qualified = std::string("_core.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  if (type == nullptr) throw nb::python_error();
  m.attr(name) = nb::handle(type);
  return type;
}

}  // namespace

void bind_netprobe(nb::module_& m) {
  // ProbeError is an exogpu.Error and a ConnectionError, so either catches it.
  nb::object base = nb::hasattr(m, "Error") ? nb::object(m.attr("Error")) : nb::borrow(PyExc_RuntimeError);
  nb::object bases = nb::make_tuple(base, nb::handle(PyExc_ConnectionError));
  probe_error_type = new_exception(m, "ProbeError", "A network probe could not be run.", bases.ptr());
  authentication_error_type =
      new_exception(m, "ProbeAuthenticationError", "The probe server refused the token.", probe_error_type);
  // Registered after the core's translator, so tried before it.
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const net::AuthenticationError& e) {
      PyErr_SetString(authentication_error_type, e.what());
    } catch (const net::ProbeError& e) {
      PyErr_SetString(probe_error_type, e.what());
    }
  });

  nb::class_<net::Server>(m, "NetProbeServer", "Token-guarded network probe server on its own threads.")
      .def(
          "__init__",
          [](net::Server* self, const std::string& bind, int port, const std::string& token,
             unsigned max_sessions, unsigned max_connections, unsigned max_streams, double max_test_seconds,
             std::uint64_t max_test_bytes, double max_udp_rate_bps, double handshake_timeout,
             double idle_timeout) {
            if (port < 0 || port > 65535) throw InvalidArgument("port must be 0 to 65535, got " + std::to_string(port));
            net::ServerOptions o;
            o.bind_address = bind;
            o.port = static_cast<std::uint16_t>(port);
            o.token = token;
            o.max_sessions = max_sessions;
            o.max_connections = max_connections;
            o.max_streams = max_streams;
            o.max_test_seconds = max_test_seconds;
            o.max_test_bytes = max_test_bytes;
            o.max_udp_rate_bps = max_udp_rate_bps;
            o.handshake_timeout = handshake_timeout;
            o.idle_timeout = idle_timeout;
            nb::gil_scoped_release release;
            new (self) net::Server(std::move(o));
          },
          "bind"_a, "port"_a, "token"_a, "max_sessions"_a, "max_connections"_a, "max_streams"_a,
          "max_test_seconds"_a, "max_test_bytes"_a, "max_udp_rate_bps"_a, "handshake_timeout"_a,
          "idle_timeout"_a)
      .def("close", &net::Server::close, nb::call_guard<nb::gil_scoped_release>(),
           "Stop serving and join every thread. Idempotent.")
      .def_prop_ro("running", &net::Server::running)
      .def_prop_ro("port", &net::Server::port)
      .def_prop_ro("address", &net::Server::address)
      .def("stats", [](const net::Server& s) { return stats_dict(s.stats()); });

  m.def(
      "net_probe",
      [](const std::string& host, int port, const std::string& token, double seconds, unsigned streams,
         double udp_rate_bps, unsigned udp_packet_size, double rtt_seconds, unsigned rtt_samples,
         double connect_timeout, int socket_buffer) {
        if (port < 1 || port > 65535) throw InvalidArgument("port must be 1 to 65535, got " + std::to_string(port));
        net::ClientOptions o;
        o.host = host;
        o.port = static_cast<std::uint16_t>(port);
        o.token = token;
        o.seconds = seconds;
        o.streams = streams;
        o.udp_rate_bps = udp_rate_bps;
        o.udp_packet_size = udp_packet_size;
        o.rtt_seconds = rtt_seconds;
        o.rtt_samples = rtt_samples;
        o.connect_timeout = connect_timeout;
        o.socket_buffer = socket_buffer;
        net::NetResult r;
        {
          nb::gil_scoped_release release;
          r = net::run_probe(o);
        }
        return result_dict(r);
      },
      "host"_a, "port"_a, "token"_a, "seconds"_a, "streams"_a, "udp_rate_bps"_a, "udp_packet_size"_a,
      "rtt_seconds"_a, "rtt_samples"_a, "connect_timeout"_a, "socket_buffer"_a,
      "Run the network probe against a server; blocks without the GIL.");
}

}  // namespace exogpu::bindings
