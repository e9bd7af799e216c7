// Wire format of the network probe (version 1). All integers big-endian.
//
// Every TCP message is a frame: u16 type, u16 flags (0), u32 payload length,
// then the payload. A connection opens with HELLO:
//   magic "EXNP", u16 version, u16 role, then
//   role CONTROL: u16 token length, token bytes
//   role DATA:    u32 session id, 16-byte session cookie, u16 stream index
// A control connection is answered with WELCOME (session id, cookie, limits)
// or ERROR (code, text); a data connection with OK or ERROR. UDP datagrams
// carry magic "EXNU", u32 session id, u64 test key, u64 sequence, u64 send
// time (ns), then padding up to the requested size.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace exogpu::net::detail {

inline constexpr std::array<std::byte, 4> kHelloMagic{std::byte{'E'}, std::byte{'X'}, std::byte{'N'},
                                                      std::byte{'P'}};
inline constexpr std::uint32_t kDatagramMagic = 0x45584e55;  // "EXNU"
inline constexpr std::size_t kFrameHeaderBytes = 8;
inline constexpr std::size_t kMaxControlPayload = 1024;
inline constexpr std::size_t kCookieBytes = 16;
inline constexpr std::size_t kMaxTokenBytes = 256;
inline constexpr std::size_t kDatagramHeaderBytes = 32;
inline constexpr std::size_t kMaxDatagramBytes = 65000;

enum class Role : std::uint16_t { Control = 1, Data = 2 };

enum class FrameType : std::uint16_t {
  Hello = 1,
  Welcome = 2,
  Error = 3,
  Ok = 4,
  Ping = 10,
  Pong = 11,
  BulkStart = 20,
  BulkEnd = 21,
  BulkResult = 22,
  UdpStart = 30,
  UdpEnd = 31,
  UdpResult = 32,
  Bye = 40,
};

enum class ErrorCode : std::uint16_t {
  BadRequest = 1,
  Version = 2,
  Authentication = 3,
  Busy = 4,
  Limit = 5,
  Internal = 6,
};

// Appends big-endian fields to a byte vector.
class Writer {
 public:
  Writer& u8(std::uint8_t v);
  Writer& u16(std::uint16_t v);
  Writer& u32(std::uint32_t v);
  Writer& u64(std::uint64_t v);
  Writer& f64(double v);
  Writer& bytes(std::span<const std::byte> v);
  Writer& text(std::string_view v);  // u16 length + bytes
  [[nodiscard]] const std::vector<std::byte>& data() const noexcept { return data_; }

 private:
  std::vector<std::byte> data_;
};

// Reads big-endian fields from a payload; any read past the end throws
// ProbeError("truncated ...") so a short frame can never be misread.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> data) noexcept : data_(data) {}
  std::uint8_t u8();
  std::uint16_t u16();
  std::uint32_t u32();
  std::uint64_t u64();
  double f64();
  std::span<const std::byte> bytes(std::size_t n);
  std::string text();
  [[nodiscard]] std::size_t remaining() const noexcept { return data_.size() - offset_; }

 private:
  std::span<const std::byte> take(std::size_t n);
  std::span<const std::byte> data_;
  std::size_t offset_ = 0;
};

struct Frame {
  FrameType type{};
  std::vector<std::byte> payload;
};

// Encodes one frame (header + payload) ready to send in one call.
[[nodiscard]] std::vector<std::byte> encode_frame(FrameType type, std::span<const std::byte> payload);

// Reads frames from a blocking socket through a small buffer, so that a
// small frame costs one recv() (the ping-pong's latency depends on it).
class FrameReader {
 public:
  explicit FrameReader(int fd) : fd_(fd) {}
  // Reads the next frame, refusing payloads larger than `max_payload`
  // (at most kMaxControlPayload). Returns false on a clean close before the
  // header; throws ProbeError on a timeout, a cut or a malformed header.
  [[nodiscard]] bool next(Frame& frame, std::size_t max_payload = kMaxControlPayload);

 private:
  bool fill(std::size_t need);
  int fd_;
  std::array<std::byte, 2 * (kFrameHeaderBytes + kMaxControlPayload)> buffer_{};
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

void write_frame(int fd, FrameType type, std::span<const std::byte> payload = {});
void write_error(int fd, ErrorCode code, std::string_view message) noexcept;

// Throws the ProbeError (or AuthenticationError) an ERROR frame stands for.
[[noreturn]] void throw_error_frame(const Frame& frame, std::string_view context);

// Compares a presented secret with the expected one in time that depends
// only on the expected length, never on where the two first differ.
[[nodiscard]] bool constant_time_equal(std::span<const std::byte> expected,
                                       std::span<const std::byte> presented) noexcept;

// Bytes from the OS's cryptographic random source.
void fill_random(std::span<std::byte> out);

}  // namespace exogpu::net::detail
