// A staging ring: one UPLOAD or READBACK buffer, mapped for its lifetime,
// handed out front to back in pieces that each stay in use until the
// submission that copies through them has completed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>

#include "backends/directml/dml_context.hpp"

namespace exogpu::directml {

class StagingRing {
 public:
  StagingRing(const Context& context, HeapKind kind, std::uint64_t capacity);
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;
  ~StagingRing();

  [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] ID3D12Resource* resource() const noexcept { return resource_.Get(); }
  [[nodiscard]] std::byte* data(std::uint64_t offset) const noexcept { return mapped_ + offset; }

  // The offset of `n` free contiguous bytes (n <= capacity), now owned by the
  // next submission; nullopt while pieces in use leave no such room.
  [[nodiscard]] std::optional<std::uint64_t> try_reserve(std::uint64_t n);
  // Hands the pieces reserved since the last call to submission `value`.
  void assign(std::uint64_t value);
  // Frees the pieces of submissions up to `completed`.
  void retire(std::uint64_t completed);
  // The submission whose completion frees the oldest piece; nullopt when none is in use.
  [[nodiscard]] std::optional<std::uint64_t> oldest() const;

 private:
  struct Piece {
    std::uint64_t begin;
    std::uint64_t end;
    std::uint64_t value;  // kUnassigned until assign()
  };
  static constexpr std::uint64_t kUnassigned = ~std::uint64_t{0};

  ComPtr<ID3D12Resource> resource_;
  std::byte* mapped_ = nullptr;
  std::uint64_t capacity_;
  std::uint64_t head_ = 0;  // where the next piece starts, if it fits
  std::deque<Piece> in_use_;
};

}  // namespace exogpu::directml
