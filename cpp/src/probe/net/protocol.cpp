#include "probe/net/protocol.hpp"

#include <sys/random.h>

#include <bit>
#include <cerrno>
#include <cstring>

#include "exogpu/netprobe.hpp"
#include "probe/net/socket.hpp"

namespace exogpu::net::detail {

Writer& Writer::u8(std::uint8_t v) {
  data_.push_back(static_cast<std::byte>(v));
  return *this;
}
Writer& Writer::u16(std::uint16_t v) { return u8(static_cast<std::uint8_t>(v >> 8)).u8(static_cast<std::uint8_t>(v)); }
Writer& Writer::u32(std::uint32_t v) {
  return u16(static_cast<std::uint16_t>(v >> 16)).u16(static_cast<std::uint16_t>(v));
}
Writer& Writer::u64(std::uint64_t v) {
  return u32(static_cast<std::uint32_t>(v >> 32)).u32(static_cast<std::uint32_t>(v));
}
Writer& Writer::f64(double v) { return u64(std::bit_cast<std::uint64_t>(v)); }
Writer& Writer::bytes(std::span<const std::byte> v) {
  data_.insert(data_.end(), v.begin(), v.end());
  return *this;
}
Writer& Writer::text(std::string_view v) {
  const std::size_t n = v.size() > 0xffff ? 0xffff : v.size();
  u16(static_cast<std::uint16_t>(n));
  return bytes(std::as_bytes(std::span(v.data(), n)));
}

std::span<const std::byte> Reader::take(std::size_t n) {
  if (n > remaining()) {
    throw ProbeError("truncated frame: wanted " + std::to_string(n) + " more bytes, " +
                     std::to_string(remaining()) + " left");
  }
  auto out = data_.subspan(offset_, n);
  offset_ += n;
  return out;
}
std::uint8_t Reader::u8() { return std::to_integer<std::uint8_t>(take(1)[0]); }
std::uint16_t Reader::u16() {
  const auto b = take(2);
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(b[0]) << 8) | std::to_integer<unsigned>(b[1]));
}
std::uint32_t Reader::u32() {
  const std::uint32_t hi = u16();
  return (hi << 16) | u16();
}
std::uint64_t Reader::u64() {
  const std::uint64_t hi = u32();
  return (hi << 32) | u32();
}
double Reader::f64() { return std::bit_cast<double>(u64()); }
std::span<const std::byte> Reader::bytes(std::size_t n) { return take(n); }
std::string Reader::text() {
  const auto n = u16();
  const auto b = take(n);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::vector<std::byte> encode_frame(FrameType type, std::span<const std::byte> payload) {
  Writer w;
  w.u16(static_cast<std::uint16_t>(type)).u16(0).u32(static_cast<std::uint32_t>(payload.size())).bytes(payload);
  return w.data();
}

bool FrameReader::fill(std::size_t need) {
  if (end_ - begin_ >= need) return true;
  if (begin_ + need > buffer_.size()) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  while (end_ - begin_ < need) {
    const ssize_t n = ::recv(fd_, buffer_.data() + end_, buffer_.size() - end_, 0);
    if (n > 0) {
      end_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) {
      if (end_ == begin_) return false;
      throw ProbeError("connection closed mid-frame");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) throw ProbeError("timed out waiting for a frame");
    throw ProbeError("receive failed: " + os_error(errno));
  }
  return true;
}

bool FrameReader::next(Frame& frame, std::size_t max_payload) {
  if (max_payload > kMaxControlPayload) max_payload = kMaxControlPayload;
  if (!fill(kFrameHeaderBytes)) return false;
  Reader r{std::span<const std::byte>(buffer_).subspan(begin_, kFrameHeaderBytes)};
  const auto type = r.u16();
  const auto flags = r.u16();
  const auto length = r.u32();
  if (flags != 0) throw ProbeError("malformed frame: nonzero flags");
  if (length > max_payload) {
    throw ProbeError("frame payload of " + std::to_string(length) + " bytes exceeds the limit of " +
                     std::to_string(max_payload));
  }
  if (!fill(kFrameHeaderBytes + length)) throw ProbeError("connection closed mid-frame");
  frame.type = static_cast<FrameType>(type);
  const auto* start = buffer_.data() + begin_ + kFrameHeaderBytes;
  frame.payload.assign(start, start + length);
  begin_ += kFrameHeaderBytes + length;
  if (begin_ == end_) begin_ = end_ = 0;
  return true;
}

void write_frame(int fd, FrameType type, std::span<const std::byte> payload) {
  const auto bytes = encode_frame(type, payload);
  send_all(fd, bytes, "send frame");
}

void write_error(int fd, ErrorCode code, std::string_view message) noexcept {
  try {
    Writer w;
    w.u16(static_cast<std::uint16_t>(code)).text(message);
    write_frame(fd, FrameType::Error, w.data());
  } catch (...) {
    // The peer may already be gone; the connection is closed next anyway.
  }
}

void throw_error_frame(const Frame& frame, std::string_view context) {
  Reader r(frame.payload);
  const auto code = static_cast<ErrorCode>(r.u16());
  const std::string text = r.text();
  const std::string message = std::string(context) + ": server refused: " + text;
  if (code == ErrorCode::Authentication) throw AuthenticationError(message);
  throw ProbeError(message);
}

bool constant_time_equal(std::span<const std::byte> expected,
                         std::span<const std::byte> presented) noexcept {
  unsigned diff = expected.size() == presented.size() ? 0U : 1U;
  const std::size_t n = presented.size();
  for (std::size_t i = 0; i < expected.size(); ++i) {
    // Index the presented secret modulo its length so the loop always runs
    // over the expected length and touches memory independent of content.
    const std::byte b = n == 0 ? std::byte{0} : presented[i % n];
    diff |= std::to_integer<unsigned>(expected[i] ^ b);
  }
  return diff == 0;
}

void fill_random(std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw ProbeError("getrandom failed: " + os_error(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace exogpu::net::detail
