// exogpu-bench-placement: solve time of the placement search.
//  * Llama 3 70B (bf16, 4096-token context) on 8 heterogeneous devices over 3
//    nodes (benchmarks/clusters/lab-3-nodes.json), per objective;
//  * growing layers (32..200) on 8 devices and devices (2..16) under 82 layers.
// Layer figures follow exogpu.models for Llama 3 70B (hidden 8192, 80 blocks,
// GQA with 8 KV heads): blocks of 855,654,400 parameters.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "exogpu/placement.hpp"

namespace ep = exogpu::placement;

namespace {

constexpr double kGiB = 1073741824.0;
constexpr std::uint64_t kContext = 4096;

std::vector<ep::Layer> llama70b_layers(int blocks) {
  const std::uint64_t hidden = 8192;
  const std::uint64_t vocab = 128256;
  const std::uint64_t block_params = 855'654'400;
  const double attention = 4.0 * 64 * 128 * kContext;
  std::vector<ep::Layer> layers;
  layers.push_back({"embed", 2 * vocab * hidden, 0, 0.0, 2 * hidden});
  for (int i = 0; i < blocks; ++i) {
    layers.push_back({"block", 2 * block_params, 2 * 8 * 128 * 2, 2.0 * block_params + attention, 2 * hidden});
  }
  layers.push_back({"output", 2 * (vocab * hidden + hidden), 0, 2.0 * (vocab * hidden + hidden), 4 * vocab});
  return layers;
}

struct Kind {
  double memory_gib, tflops, gbs;
};
// H100, A100 80, A100 40, 4090, 3090, M2 Ultra, M1 Max, 780M
constexpr Kind kKinds[] = {{80, 989, 3350}, {80, 312, 2039}, {40, 312, 1555}, {24, 165, 1008},
                           {24, 71, 936},   {192, 27.2, 800}, {64, 10.4, 400}, {32, 8.9, 90}};

void add_links(ep::Problem& p) {
  const std::size_t d = p.devices.size();
  p.links.resize(d * d);
  for (std::size_t a = 0; a < d; ++a) {
    for (std::size_t b = 0; b < d; ++b) {
      const bool same = p.devices[a].node == p.devices[b].node;
      p.links[a * d + b] = same ? ep::Link{2.5e10, 1e-5} : ep::Link{1.25e9, 2e-4};
    }
  }
}

// The lab cluster: server (H100, A100 80, A100 40), desk (4090, 3090, 3090,
// 780M), mac (M2 Ultra); the explicit server-desk and mac-desk links too.
ep::Problem lab() {
  ep::Problem p;
  p.layers = llama70b_layers(80);
  const struct {
    const char* id;
    const char* node;
    int kind;
  } devices[] = {{"server:cuda:0", "server", 0}, {"server:cuda:1", "server", 1}, {"server:cuda:2", "server", 2},
                 {"desk:cuda:0", "desk", 3},     {"desk:cuda:1", "desk", 4},     {"desk:cuda:2", "desk", 4},
                 {"desk:vulkan:0", "desk", 7},   {"mac:metal:0", "mac", 5}};
  for (const auto& d : devices) {
    const Kind& k = kKinds[d.kind];
    p.devices.push_back({d.id, d.node, static_cast<std::uint64_t>(k.memory_gib * kGiB), 0, k.tflops * 1e12, k.gbs * 1e9});
  }
  add_links(p);
  const std::size_t n = p.devices.size();
  p.links[0 * n + 3] = p.links[3 * n + 0] = ep::Link{3.125e9, 1e-4};
  p.links[7 * n + 3] = p.links[3 * n + 7] = ep::Link{5e9, 5e-5};
  p.context_tokens = kContext;
  p.memory_headroom = 0.1;
  return p;
}

// `blocks` Llama-70B blocks on `count` devices of mixed kinds, three per node,
// memory in proportion to the kind's with twice the model in all.
ep::Problem synthetic(int blocks, int count) {
  ep::Problem p;
  p.layers = llama70b_layers(blocks);
  double need = 0;
  for (const auto& l : p.layers) need += static_cast<double>(l.weight_bytes + kContext * l.kv_bytes_per_token);
  double kind_total = 0;
  for (int i = 0; i < count; ++i) kind_total += kKinds[i % 8].memory_gib;
  for (int i = 0; i < count; ++i) {
    const Kind& k = kKinds[i % 8];
    const double jitter = 1.0 + 0.01 * i;  // no two devices identical
    p.devices.push_back({"dev" + std::to_string(i), "node" + std::to_string(i / 3),
                         static_cast<std::uint64_t>(2 * need * k.memory_gib / kind_total), 0,
                         k.tflops * 1e12 * jitter, k.gbs * 1e9 * jitter});
  }
  add_links(p);
  p.context_tokens = kContext;
  p.memory_headroom = 0.1;
  return p;
}

void run(benchmark::State& state, const ep::Problem& problem, ep::Objective objective) {
  ep::Options options;
  options.objective = objective;
  options.time_budget_seconds = 10.0;
  bool optimal = true;
  for (auto _ : state) {
    const ep::Placement result = ep::solve(problem, options);
    optimal = optimal && result.optimal;
    benchmark::DoNotOptimize(result.value);
  }
  state.counters["optimal"] = optimal ? 1 : 0;
}

void BM_Llama70bLab(benchmark::State& state) {
  static const ep::Problem problem = lab();
  run(state, problem, static_cast<ep::Objective>(state.range(0)));
  state.SetLabel(state.range(0) == 0 ? "latency" : state.range(0) == 1 ? "throughput" : "memory");
}
BENCHMARK(BM_Llama70bLab)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

void BM_Layers(benchmark::State& state) {
  const ep::Problem problem = synthetic(static_cast<int>(state.range(0)) - 2, 8);
  run(state, problem, ep::Objective::throughput);
}
BENCHMARK(BM_Layers)->Arg(32)->Arg(64)->Arg(128)->Arg(200)->Unit(benchmark::kMillisecond);

void BM_Devices(benchmark::State& state) {
  const ep::Problem problem = synthetic(80, static_cast<int>(state.range(0)));
  run(state, problem, ep::Objective::throughput);
}
BENCHMARK(BM_Devices)->DenseRange(2, 12, 2)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
