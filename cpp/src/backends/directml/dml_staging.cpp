#include "backends/directml/dml_staging.hpp"

namespace exogpu::directml {

StagingRing::StagingRing(const Context& context, HeapKind kind, std::uint64_t capacity)
    : resource_(context.create_buffer(capacity, kind)), capacity_(capacity) {
  // Upload memory is written by the host only; readback memory is read.
  const D3D12_RANGE nothing_read{0, 0};
  void* mapped = nullptr;
  context.check(resource_->Map(0, kind == HeapKind::upload ? &nothing_read : nullptr, &mapped),
                "ID3D12Resource::Map (staging ring)");
  mapped_ = static_cast<std::byte*>(mapped);
}

StagingRing::~StagingRing() { resource_->Unmap(0, nullptr); }

std::optional<std::uint64_t> StagingRing::try_reserve(std::uint64_t n) {
  if (n == 0 || n > capacity_) return std::nullopt;
  // In use: the pieces from the oldest one's start (tail) round to head_.
  std::uint64_t begin = 0;
  if (!in_use_.empty()) {
    const std::uint64_t tail = in_use_.front().begin;
    if (head_ > tail) {  // free: [head, capacity) and [0, tail)
      if (capacity_ - head_ >= n) {
        begin = head_;
      } else if (tail >= n) {
        begin = 0;
      } else {
        return std::nullopt;
      }
    } else if (head_ < tail && tail - head_ >= n) {  // free: [head, tail)
      begin = head_;
    } else {  // no room; head == tail means full
      return std::nullopt;
    }
  }
  in_use_.push_back({begin, begin + n, kUnassigned});
  head_ = begin + n == capacity_ ? 0 : begin + n;
  return begin;
}

void StagingRing::assign(std::uint64_t value) {
  for (auto it = in_use_.rbegin(); it != in_use_.rend() && it->value == kUnassigned; ++it) {
    it->value = value;
  }
}

void StagingRing::retire(std::uint64_t completed) {
  while (!in_use_.empty() && in_use_.front().value != kUnassigned &&
         in_use_.front().value <= completed) {
    in_use_.pop_front();
  }
  if (in_use_.empty()) head_ = 0;
}

std::optional<std::uint64_t> StagingRing::oldest() const {
  if (in_use_.empty() || in_use_.front().value == kUnassigned) return std::nullopt;
  return in_use_.front().value;
}

}  // namespace exogpu::directml
