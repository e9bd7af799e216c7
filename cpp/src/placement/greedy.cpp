#include "placement/greedy.hpp"

#include <algorithm>
#include <numeric>

namespace exogpu::placement::detail {
namespace {

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
  for (int u : order) {
    if (begin == L) break;
    if (prev >= 0 && !memory && t.hop(prev, u, begin) > cap) continue;
    int end = begin;
    while (end < L && static_cast<double>(t.stage_memory(begin, end + 1)) <= t.capacity(u)) {
      const double cost = memory ? t.memory_ratio(u, begin, end + 1) : t.stage_time(u, begin, end + 1);
      if (cost > cap) break;
      ++end;
    }
    if (end == begin) continue;
    out.push_back(StageSpec{t.members(u).front(), begin, end - 1});
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
  for (int u : order) {
    if (begin == L) break;
    int end = begin;
    while (end < L && static_cast<double>(t.stage_memory(begin, end + 1)) <= t.capacity(u)) ++end;
    if (end == begin) continue;
    out.push_back(StageSpec{t.members(u).front(), begin, end - 1});
    begin = end;
  }
  if (begin != L) out.clear();
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
