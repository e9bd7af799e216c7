#include "placement/lower_bound.hpp"

#include <algorithm>

namespace exogpu::placement::detail {

double relaxed_lower_bound(const CostTables& t, Objective objective) {
  const int L = t.layers();
  const int U = t.units();
  const bool sum = objective == Objective::latency;
  const auto cell = [L](int u, int k) { return static_cast<std::size_t>(u) * (L + 1) + k; };
  std::vector<double> f(static_cast<std::size_t>(U) * (L + 1), kInf);
  std::vector<double> g(static_cast<std::size_t>(U) * (L + 1), kInf);
  for (int u = 0; u < U; ++u) g[cell(u, 0)] = 0.0;
  for (int k = 1; k <= L; ++k) {
    for (int e = 0; e < U; ++e) {
      double best = kInf;
      for (int j = k - 1; j >= t.lowest_fitting_start(e, k); --j) {
        const double s = objective == Objective::memory ? t.memory_ratio(e, j, k) : t.stage_time(e, j, k);
        if (!sum && s >= best) break;
        const double a = g[cell(e, j)];
        if (a == kInf) continue;
        best = std::min(best, sum ? a + s : std::max(a, s));
      }
      f[cell(e, k)] = best;
    }
    if (k == L) break;
    for (int e = 0; e < U; ++e) {
      double best = kInf;
      for (int d = 0; d < U; ++d) {
        if (d == e && t.count(d) < 2) continue;
        const double a = f[cell(d, k)];
        if (a == kInf) continue;
        const double h = objective == Objective::memory ? 0.0 : t.hop(d, e, k);
        best = std::min(best, sum ? a + h : std::max(a, h));
      }
      g[cell(e, k)] = best;
    }
  }
  double bound = kInf;
  for (int u = 0; u < U; ++u) bound = std::min(bound, f[cell(u, L)]);
  return bound;
}

double counting_lower_bound(const CostTables& t, Objective objective, double known_low,
                            double known_high) {
  if (objective == Objective::latency || !(known_high < kInf) || !(known_low < known_high)) {
    return known_low;
  }
  const int L = t.layers();
  const auto reachable = [&](double v) {
    long long total = 0;
    for (int u = 0; u < t.units(); ++u) {
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
  for (int i = 0; i < 60 && lo < hi; ++i) {
    const double mid = lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) break;
    if (reachable(mid)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return lo;
}

}  // namespace exogpu::placement::detail
