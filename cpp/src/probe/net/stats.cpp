#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>

#include "exogpu/netprobe.hpp"

namespace exogpu::net {

void JitterEstimator::add(std::int64_t send_ns, std::int64_t receive_ns) noexcept {
  const std::int64_t transit = receive_ns - send_ns;
  if (has_previous_) {
    const double d = std::abs(static_cast<double>(transit - previous_transit_));
    jitter_ += (d - jitter_) / 16.0;
  }
  previous_transit_ = transit;
  has_previous_ = true;
}

SequenceTracker::SequenceTracker(std::uint64_t capacity)
    : bits_((capacity + 63) / 64, 0), capacity_(capacity) {}

bool SequenceTracker::add(std::uint64_t seq) {
  if (seq >= capacity_) {
    ++out_of_range_;
    return false;
  }
  std::uint64_t& word = bits_[seq / 64];
  const std::uint64_t mask = std::uint64_t{1} << (seq % 64);
  if ((word & mask) != 0) {
    ++duplicates_;
    return false;
  }
  word |= mask;
  ++received_;
  if (highest_ && seq < *highest_) {
    ++reordered_;
  } else {
    highest_ = seq;
  }
  return true;
}

std::uint64_t SequenceTracker::received_below(std::uint64_t sent) const noexcept {
  const std::uint64_t limit = std::min(sent, capacity_);
  std::uint64_t count = 0;
  const std::uint64_t full_words = limit / 64;
  for (std::uint64_t i = 0; i < full_words; ++i) count += static_cast<std::uint64_t>(std::popcount(bits_[i]));
  if (limit % 64 != 0) {
    const std::uint64_t mask = (std::uint64_t{1} << (limit % 64)) - 1;
    count += static_cast<std::uint64_t>(std::popcount(bits_[full_words] & mask));
  }
  return count;
}

RttStats summarize_rtt(std::vector<double> samples_us) {
  RttStats out;
  out.samples = samples_us.size();
  if (samples_us.empty()) return out;
  std::sort(samples_us.begin(), samples_us.end());
  const std::size_t n = samples_us.size();
  out.min_us = samples_us.front();
  out.max_us = samples_us.back();
  out.median_us = n % 2 == 1 ? samples_us[n / 2] : (samples_us[n / 2 - 1] + samples_us[n / 2]) / 2.0;
  // Nearest rank: the smallest sample with at least 99 % of samples at or below it.
  const auto rank = static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(n)));
  out.p99_us = samples_us[std::max<std::size_t>(rank, 1) - 1];
  out.mean_us = std::accumulate(samples_us.begin(), samples_us.end(), 0.0) / static_cast<double>(n);
  return out;
}

}  // namespace exogpu::net
