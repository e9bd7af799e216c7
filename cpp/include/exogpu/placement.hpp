// The layer-placement search (docs/placement.md).
//
// A model is an ordered list of layers; a placement cuts it into contiguous
// stages, each on a distinct device. solve() finds the placement that is best
// for one objective under the contract's cost model and proves it optimal
// when it can within the time budget; past that it returns its best
// placement with a lower bound. evaluate() prices any given placement with
// the same cost functions (the baselines use it).
//
// Validation with field names lives in Python; this layer checks shapes and
// ranges again (InvalidArgument) so that no input can crash it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "exogpu/error.hpp"

namespace exogpu::placement {

// Layer::read_bytes_per_token when the layer reads all its weights per step.
inline constexpr std::uint64_t kReadAllWeights = ~std::uint64_t{0};

struct Layer {
  std::string name;
  std::uint64_t weight_bytes = 0;  // resident
  std::uint64_t kv_bytes_per_token = 0;
  double flops_per_token = 0.0;
  std::uint64_t activation_bytes = 0;
  // Weight bytes streamed per decode step (contract version 2): an
  // embedding reads batch rows, a mixture of experts its shared weights and
  // the experts the batch touches. kReadAllWeights: weight_bytes.
  std::uint64_t read_bytes_per_token = kReadAllWeights;
};

struct Device {
  std::string id;
  std::string node;
  std::uint64_t memory_bytes = 0;
  // What the free-memory-proportional baseline splits by; 0 means "same as
  // memory_bytes". The optimal search always uses memory_bytes.
  std::uint64_t free_memory_bytes = 0;
  double flops = 0.0;
  double memory_bandwidth = 0.0;
  // Contract version 2. Index into Problem::memory_pools of the physical
  // memory this device shares with others; -1: its own memory alone.
  int memory_pool = -1;
  // Seconds every stage on this device adds per decode step.
  double stage_overhead = 0.0;
  // Bytes per second this device's node reads from disk; 0: no offload.
  double disk_read_bandwidth = 0.0;
};

struct Link {
  double bandwidth = 0.0;  // bytes per second
  double latency = 0.0;    // seconds
};

// One physical memory that several devices draw from.
struct MemoryPool {
  std::string name;
  std::uint64_t capacity_bytes = 0;
};

// A host outside the placed stages that gives each token's input and takes
// its output: the first stage pays an entry hop, the last an exit hop.
struct Endpoints {
  std::string node;
  std::uint64_t input_bytes = 0;
  std::uint64_t output_bytes = 0;
  // One entry per device, already resolved (listed link, intra-node or
  // default), as Problem::links.
  std::vector<Link> links;
};

struct Problem {
  std::vector<Layer> layers;
  std::vector<Device> devices;
  // devices.size() squared entries, row-major: links[a * D + b] is the link
  // between devices a and b, already resolved (explicit pair, intra-node or
  // default). Must be symmetric; the diagonal is ignored.
  std::vector<Link> links;
  std::uint64_t batch = 1;
  std::uint64_t context_tokens = 0;
  double memory_headroom = 0.0;
  bool fixed_order = false;
  bool ring = false;
  std::vector<MemoryPool> memory_pools;
  // Empty, or exactly one entry: the endpoints (refused together with ring).
  std::vector<Endpoints> endpoints;
  // Stages may exceed their device's memory when it has disk_read_bandwidth;
  // the excess is read from disk every decode step (docs/placement.md).
  bool allow_disk_offload = false;
};

enum class Objective { latency, throughput, memory };
enum class Strategy { optimal, exo_memory_weighted, free_memory_proportional };

struct Options {
  Objective objective = Objective::throughput;
  Strategy strategy = Strategy::optimal;
  // Positive and finite. solve() returns within it plus a slack for the
  // linear work no search can skip (validation, the cost tables, pricing the
  // answer): see docs/placement.md, "Time budget".
  double time_budget_seconds = 1.0;
  // Called about every 20 ms while the search runs; whatever it throws
  // leaves solve() unchanged (the Python binding checks for signals here and
  // throws the pending KeyboardInterrupt).
  std::function<void()> interrupt;
  // Empty, or one entry per layer: the index (into Problem::devices) of the
  // device that held the layer in the previous placement, -1 when that device
  // is gone. With it, solve() prefers among the placements of optimal value
  // the one that moves the fewest layers.
  std::vector<int> previous;
};

// A stage as the caller gives it to evaluate(): layers first..last inclusive.
struct StageSpec {
  int device = 0;
  int first_layer = 0;
  int last_layer = 0;
};

struct Stage {
  int device = 0;
  int first_layer = 0;
  int last_layer = 0;  // inclusive
  double time = 0.0;
  std::uint64_t memory_bytes = 0;
  std::uint64_t offloaded_bytes = 0;  // read from disk every decode step
};

enum class HopKind { stage, ring, entry, exit };

struct Hop {
  int from = 0;  // -1: the endpoints (entry hop)
  int to = 0;    // -1: the endpoints (exit hop)
  int after_layer = 0;  // the ring and exit hops have L - 1, the entry hop -1
  double time = 0.0;
  HopKind kind = HopKind::stage;
};

struct Placement {
  Objective objective = Objective::throughput;
  Strategy strategy = Strategy::optimal;
  double value = 0.0;
  std::vector<Stage> stages;
  std::vector<Hop> hops;
  double latency = 0.0;
  double bottleneck = 0.0;
  double max_memory_fraction = 0.0;  // largest M / memory_bytes over stages
  bool optimal = false;
  double lower_bound = 0.0;
  double solve_seconds = 0.0;
  // Baselines can overflow a device: they are still priced, and flagged.
  bool feasible = true;
  std::string infeasible_reason;
  std::vector<int> moved_layers;  // only filled when Options::previous is given
  std::uint64_t states_explored = 0;
};

// No placement fits. Says how many bytes the model needs and how many the
// devices can hold (after the headroom).
class Infeasible : public InvalidArgument {
 public:
  Infeasible(const std::string& message, std::uint64_t needed_bytes, double capacity_bytes)
      : InvalidArgument(message), needed_bytes_(needed_bytes), capacity_bytes_(capacity_bytes) {}
  [[nodiscard]] std::uint64_t needed_bytes() const noexcept { return needed_bytes_; }
  [[nodiscard]] double capacity_bytes() const noexcept { return capacity_bytes_; }

 private:
  std::uint64_t needed_bytes_;
  double capacity_bytes_;
};

// Throws InvalidArgument for a malformed problem, Infeasible when no
// placement fits (strategy optimal only; baselines come back flagged).
[[nodiscard]] Placement solve(const Problem& problem, const Options& options);

// Prices the given stages (contiguous, covering every layer, distinct
// devices) under the contract; memory overflows are flagged, not thrown.
[[nodiscard]] Placement evaluate(const Problem& problem, Objective objective,
                                 const std::vector<StageSpec>& stages);

}  // namespace exogpu::placement
