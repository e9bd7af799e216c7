#include "placement/lower_bound.hpp"

#include <algorithm>
#include <deque>

namespace exogpu::placement::detail {

double trivial_lower_bound(const CostTables& t, Objective objective) {
  const int L = t.layers();
  const int U = t.units();
  if (objective == Objective::memory) {
    double memory = 0.0;
    for (int u = 0; u < U; ++u) memory += t.memory(u) * t.count(u);
    double largest_layer = 0.0;  // the layer's best share of any one device
    for (int l = 0; l < L; ++l) {
      double best = kInf;
      for (int u = 0; u < U; ++u) best = std::min(best, t.memory_ratio(u, l, l + 1));
      largest_layer = std::max(largest_layer, best);
    }
    return std::max(static_cast<double>(t.total_memory()) / memory, largest_layer) * (1.0 - 1e-12);
  }
  // Latency: every layer at its fastest (a stage's overhead, disk time and
  // hops only add). Throughput: the stage holding a layer takes at least that
  // layer's one-layer stage time, overhead included.
  double sum = 0.0;
  double largest = 0.0;
  for (int l = 0; l < L; ++l) {
    double fastest = kInf;
    double stage = kInf;
    for (int u = 0; u < U; ++u) {
      fastest = std::min(fastest, t.layer_time(u, l, l + 1));
      stage = std::min(stage, t.stage_time(u, l, l + 1));
    }
    sum += fastest;
    largest = std::max(largest, stage);
  }
  // Prefix differences round; a bound a few ulps too high could claim a
  // proof it does not have.
  const double v = objective == Objective::latency ? sum : largest;
  return v * (1.0 - 1e-12);
}

double relaxed_lower_bound(const CostTables& t, Objective objective, const Deadline& deadline) {
  const int L = t.layers();
  const int U = t.units();
  const bool sum = objective == Objective::latency;
  deadline.poll();  // before allocating anything
  const auto cell = [L](int u, int k) { return static_cast<std::size_t>(u) * (L + 1) + k; };
  std::vector<double> f(static_cast<std::size_t>(U), kInf);  // f(e, k) for the current k only
  std::vector<double> g(static_cast<std::size_t>(U) * (L + 1), kInf);
  // Latency: f(e, k) = min over starts j in [lo(e, k), k) of g(e, j) - P(e, j),
  // plus P(e, k); lo only grows with k, so one deque per unit holds the
  // window's minimum.
  std::vector<std::deque<int>> window(static_cast<std::size_t>(U));
  const auto start_value = [&](int e, int j) { return g[cell(e, j)] - t.prefix_time(e, j); };
  for (int u = 0; u < U; ++u) g[cell(u, 0)] = 0.0;
  for (int k = 1; k <= L; ++k) {
    for (int e = 0; e < U; ++e) {
      double best = kInf;
      const int lo = t.lowest_fitting_start(e, k);
      if (sum) {
        auto& w = window[static_cast<std::size_t>(e)];
        const int j = k - 1;
        if (g[cell(e, j)] < kInf) {
          const double a = start_value(e, j);
          while (!w.empty() && start_value(e, w.back()) >= a) w.pop_back();
          w.push_back(j);
        }
        while (!w.empty() && w.front() < lo) w.pop_front();
        if (!w.empty()) best = start_value(e, w.front()) + t.prefix_time(e, k);
        deadline.check();
      } else {
        deadline.check(static_cast<std::uint64_t>(k - lo) + 1);
        for (int j = k - 1; j >= lo; --j) {
          const double s = objective == Objective::memory ? t.memory_ratio(e, j, k) : t.stage_time(e, j, k);
          if (s >= best) break;
          const double a = g[cell(e, j)];
          if (a == kInf) continue;
          best = std::min(best, std::max(a, s));
        }
      }
      f[static_cast<std::size_t>(e)] = best;
    }
    if (k == L) break;
    deadline.check(static_cast<std::uint64_t>(U) * U);
    for (int e = 0; e < U; ++e) {
      double best = kInf;
      for (int d = 0; d < U; ++d) {
        if (d == e && t.count(d) < 2) continue;
        const double a = f[static_cast<std::size_t>(d)];
        if (a == kInf) continue;
        const double h = objective == Objective::memory ? 0.0 : t.hop(d, e, k);
        best = std::min(best, sum ? a + h : std::max(a, h));
      }
      g[cell(e, k)] = best;
    }
  }
  double bound = kInf;
  for (int u = 0; u < U; ++u) bound = std::min(bound, f[static_cast<std::size_t>(u)]);
  // The window form (g - P(j)) + P(k) rounds differently from the stage
  // sums it bounds: keep clear of claiming a proof by rounding.
  return sum && bound < kInf ? bound * (1.0 - 1e-12) : bound;
}

double counting_lower_bound(const CostTables& t, Objective objective, double known_low,
                            double known_high, const Deadline& deadline) {
  if (objective == Objective::latency || !(known_high < kInf) || !(known_low < known_high)) {
    return known_low;
  }
  const int L = t.layers();
  const auto reachable = [&](double v) {
    long long total = 0;
    for (int u = 0; u < t.units(); ++u) {
      deadline.check(2 * static_cast<std::uint64_t>(L));
      int longest = 0;
      int j = 0;
      for (int k = 1; k <= L; ++k) {
        j = std::max(j, t.lowest_fitting_start(u, k));
        const auto cost = [&](int a) {
          return objective == Objective::memory ? t.memory_ratio(u, a, k) : t.stage_time(u, a, k);
        };
        while (j < k && cost(j) > v) ++j;
        longest = std::max(longest, k - j);
      }
      total += static_cast<long long>(longest) * t.count(u);
      if (total >= L) return true;
    }
    return false;
  };
  double lo = known_low;
  double hi = known_high;
  try {
    for (int i = 0; i < 60 && lo < hi; ++i) {
      const double mid = lo + (hi - lo) / 2;
      if (mid <= lo || mid >= hi) break;
      if (reachable(mid)) {
        hi = mid;
      } else {
        lo = mid;
      }
    }
  } catch (const TimeUp&) {
    // lo is still a value shown out of reach.
  }
  return lo;
}

}  // namespace exogpu::placement::detail
