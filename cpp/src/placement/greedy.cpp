#include "placement/greedy.hpp"

#include <algorithm>
#include <numeric>

namespace exogpu::placement::detail {
namespace {

// What each unit may still hold as stages are filled one after the other:
// its cap, and no more than earlier stages left of its shared pool.
class PoolLedger {
 public:
  explicit PoolLedger(const CostTables& t) : t_(t) {
    for (const SharedPool& pool : t.shared_pools()) left_.push_back(pool.usable);
  }
  [[nodiscard]] double room(int u) const {
    const int pool = t_.pool_of(u);
    const double cap = t_.capacity(u);
    if (pool < 0) return cap;
    const auto left = static_cast<double>(left_[static_cast<std::size_t>(pool)]);
    return left < cap ? left : cap;
  }
  // Layers j..k-1 may go on u: they fit its room, or u offloads (its
  // resident part, its whole cap, still fits the pool) and their KV fits.
  [[nodiscard]] bool takes(int u, int j, int k) const {
    if (static_cast<double>(t_.stage_memory(j, k)) <= room(u)) return true;
    return t_.offloads(u) && room(u) >= t_.capacity(u) && t_.allowed(u, j, k);
  }
  void take(int u, std::uint64_t bytes) {
    const int pool = t_.pool_of(u);
    if (pool >= 0) left_[static_cast<std::size_t>(pool)] -= bytes;
  }

 private:
  const CostTables& t_;
  std::vector<std::uint64_t> left_;
};

std::vector<int> all_units(const CostTables& t) {
  std::vector<int> order(static_cast<std::size_t>(t.units()));
  std::iota(order.begin(), order.end(), 0);
  return order;
}

// One greedy pass under `cap`; stages in unit indices (first member of each).
bool fill_under(const CostTables& t, const Problem& p, Objective objective, const std::vector<int>& order,
                double cap, std::vector<StageSpec>& out) {
  out.clear();
  const int L = t.layers();
  const bool memory = objective == Objective::memory;
  int begin = 0;
  int prev = -1;
  int first = -1;
  PoolLedger ledger(t);
  for (int u : order) {
    if (begin == L) break;
    if (prev >= 0 && !memory && t.hop(prev, u, begin) > cap) continue;
    if (prev < 0 && !memory && t.entry_hop(u) > cap) continue;
    int end = begin;
    while (end < L && ledger.takes(u, begin, end + 1)) {
      const double cost = memory ? t.memory_ratio(u, begin, end + 1) : t.stage_time(u, begin, end + 1);
      if (cost > cap) break;
      ++end;
    }
    if (end == begin) continue;
    if (end == L && !memory && t.exit_hop(u) > cap) continue;
    out.push_back(StageSpec{t.members(u).front(), begin, end - 1});
    ledger.take(u, t.resident(u, begin, end));
    if (first < 0) first = u;
    prev = u;
    begin = end;
  }
  if (begin != L) return false;
  if (p.ring && !memory && out.size() >= 2 && t.ring_latency(prev, first) > cap) return false;
  return true;
}

}  // namespace

std::vector<StageSpec> greedy_fill(const CostTables& t, const std::vector<int>& order) {
  std::vector<StageSpec> out;
  const int L = t.layers();
  int begin = 0;
  PoolLedger ledger(t);
  std::vector<int> used;
  for (int u : order) {
    if (begin == L) break;
    int end = begin;
    const double room = ledger.room(u);
    while (end < L && static_cast<double>(t.stage_memory(begin, end + 1)) <= room) ++end;
    if (end == begin) continue;
    out.push_back(StageSpec{t.members(u).front(), begin, end - 1});
    ledger.take(u, t.stage_memory(begin, end));
    used.push_back(u);
    begin = end;
  }
  if (begin != L) {
    // With disk offload the rest may still go somewhere: to the last stage
    // when its device offloads, else to an unused device that does.
    if (!used.empty() && t.offloads(used.back())) {
      const int u = used.back();
      const int first = out.back().first_layer;
      if (ledger.room(u) + static_cast<double>(t.stage_memory(first, begin)) >= t.capacity(u) &&
          t.allowed(u, first, L)) {
        out.back().last_layer = L - 1;
        return out;
      }
    }
    for (int u : order) {
      if (std::find(used.begin(), used.end(), u) != used.end()) continue;
      if (ledger.takes(u, begin, L)) {
        out.push_back(StageSpec{t.members(u).front(), begin, L - 1});
        return out;
      }
    }
    out.clear();
  }
  return out;
}

std::vector<int> capacity_order(const CostTables& t) {
  std::vector<int> order = all_units(t);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return t.capacity(a) > t.capacity(b); });
  return order;
}

std::vector<int> speed_order(const CostTables& t) {
  std::vector<int> order = all_units(t);
  const int L = t.layers();
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return t.stage_time(a, 0, L) < t.stage_time(b, 0, L); });
  return order;
}

std::vector<StageSpec> greedy_bottleneck(const CostTables& t, const Problem& p, Objective objective,
                                         const std::vector<int>& order, double low, double high,
                                         const Deadline& deadline) {
  std::vector<StageSpec> best;
  std::vector<StageSpec> trial;
  const auto work = static_cast<std::uint64_t>(t.layers()) + order.size();
  deadline.check(work);
  if (!fill_under(t, p, objective, order, high, trial)) return best;
  best = trial;
  for (int i = 0; i < 48 && low < high; ++i) {
    const double mid = low + (high - low) / 2;
    if (mid <= low || mid >= high) break;
    deadline.check(work);
    if (fill_under(t, p, objective, order, mid, trial)) {
      high = mid;
      best = trial;
    } else {
      low = mid;
    }
  }
  return best;
}

}  // namespace exogpu::placement::detail
