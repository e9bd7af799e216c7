#include "backends/directml/dml_timeline.hpp"

#include <algorithm>

#include "backends/directml/dml_error.hpp"
#include "exogpu/error.hpp"

namespace exogpu::directml {

namespace {

D3D12_COMMAND_LIST_TYPE list_type(Lane lane) {
  return lane == Lane::copy ? D3D12_COMMAND_LIST_TYPE_COPY : D3D12_COMMAND_LIST_TYPE_COMPUTE;
}

}  // namespace

Timeline::Timeline(std::shared_ptr<Context> context)
    : context_(std::move(context)),
      fence_(context_->create_fence()),
      copy_queue_(context_->create_queue(D3D12_COMMAND_LIST_TYPE_COPY)) {
  timestamp_lane_ = context_->features().copy_queue_timestamps ? Lane::copy : Lane::compute;
}

Timeline::~Timeline() {
  try {
    Lock lock(mutex_);
    wait_all(lock);
  } catch (...) {
    // A removed device completes everything; nothing is left to report to.
  }
  if (timestamp_buffer_) timestamp_buffer_->Unmap(0, nullptr);
}

ID3D12CommandQueue* Timeline::queue(Lane lane) {
  if (lane == Lane::copy) return copy_queue_.Get();
  if (!compute_queue_) compute_queue_ = context_->create_queue(D3D12_COMMAND_LIST_TYPE_COMPUTE);
  return compute_queue_.Get();
}

Work Timeline::begin(Lock& lock, Lane lane) {
  progress(lock);
  std::vector<CommandSet>& spares = lane == Lane::copy ? spare_copy_ : spare_compute_;
  Work work;
  if (!spares.empty()) {
    work.commands = std::move(spares.back());
    spares.pop_back();
    context_->check(work.commands.allocator->Reset(), "ID3D12CommandAllocator::Reset");
    context_->check(work.commands.list->Reset(work.commands.allocator.Get(), nullptr),
                    "ID3D12GraphicsCommandList::Reset");
    return work;
  }
  work.commands.lane = lane;
  ID3D12Device* device = context_->device();
  context_->check(
      device->CreateCommandAllocator(list_type(lane), IID_PPV_ARGS(&work.commands.allocator)),
      "CreateCommandAllocator");
  context_->check(device->CreateCommandList(0, list_type(lane), work.commands.allocator.Get(),
                                            nullptr, IID_PPV_ARGS(&work.commands.list)),
                  "CreateCommandList");
  return work;
}

std::uint64_t Timeline::submit(Lock& lock, Work work) {
  (void)lock;
  const Lane lane = work.commands.lane;
  context_->check(work.commands.list->Close(), "ID3D12GraphicsCommandList::Close");
  ID3D12CommandQueue* q = queue(lane);
  if (last_lane_ && *last_lane_ != lane) {
    // The other queue's work comes first.
    context_->check(q->Wait(fence_.Get(), submitted_), "ID3D12CommandQueue::Wait");
  }
  ID3D12CommandList* lists[] = {work.commands.list.Get()};
  q->ExecuteCommandLists(1, lists);
  const std::uint64_t value = submitted_ + 1;
  context_->check(q->Signal(fence_.Get(), value), "ID3D12CommandQueue::Signal");
  submitted_ = value;
  last_lane_ = lane;
  if (upload_) upload_->assign(value);
  if (readback_) readback_->assign(value);
  pending_.push_back({value, std::move(work.commands), std::move(work.allocations),
                      std::move(work.objects), std::move(work.on_complete), work.writes_host});
  return value;
}

void Timeline::gpu_wait(Lock& lock, ID3D12Fence* fence, std::uint64_t value) {
  (void)lock;
  const Lane lane = last_lane_.value_or(Lane::copy);
  ID3D12CommandQueue* q = queue(lane);
  context_->check(q->Wait(fence, value), "ID3D12CommandQueue::Wait");
  // The wait becomes a point of this timeline, so a later switch of queues,
  // which waits for the last value, waits for it too.
  const std::uint64_t next = submitted_ + 1;
  context_->check(q->Signal(fence_.Get(), next), "ID3D12CommandQueue::Signal");
  submitted_ = next;
  last_lane_ = lane;
  pending_.push_back({next, std::nullopt, {}, {}, {}, false});
}

void Timeline::retire(std::uint64_t completed) {
  while (!pending_.empty() && pending_.front().value <= completed) {
    Pending& done = pending_.front();
    if (done.on_complete) done.on_complete();
    if (done.commands) {
      (done.commands->lane == Lane::copy ? spare_copy_ : spare_compute_)
          .push_back(std::move(*done.commands));
    }
    pending_.pop_front();
  }
  if (upload_) upload_->retire(completed);
  if (readback_) readback_->retire(completed);
}

void Timeline::progress(Lock& lock) {
  (void)lock;
  if (pending_.empty()) return;
  const std::uint64_t completed = fence_->GetCompletedValue();
  if (completed == ~std::uint64_t{0}) context_->check_not_removed("a submission");
  retire(completed);
}

void Timeline::wait_for(Lock& lock, std::uint64_t value) {
  progress(lock);
  while (!pending_.empty() && pending_.front().value <= value) {
    const std::uint64_t target = std::min(value, pending_.back().value);
    // The fence is waited for without the lock, so other threads may queue
    // work meanwhile; progress() then runs the host work in order.
    lock.unlock();
    try {
      wait_for_fence(*context_, fence_.Get(), target);
    } catch (...) {
      lock.lock();
      throw;
    }
    lock.lock();
    progress(lock);
  }
}

void Timeline::wait_for_host_writes(Lock& lock) {
  std::uint64_t last = 0;
  for (const Pending& p : pending_) {
    if (p.writes_host) last = p.value;
  }
  if (last != 0) wait_for(lock, last);
}

bool Timeline::complete(Lock& lock, std::uint64_t value) {
  progress(lock);
  return pending_.empty() || pending_.front().value > value;
}

bool Timeline::host_writes_pending(Lock& lock, std::uint64_t value) {
  progress(lock);
  return std::any_of(pending_.begin(), pending_.end(), [&](const Pending& p) {
    return p.value <= value && p.writes_host;
  });
}

std::uint64_t Timeline::reserve(Lock& lock, std::unique_ptr<StagingRing>& ring, HeapKind kind,
                                std::uint64_t n) {
  if (!ring) ring = std::make_unique<StagingRing>(*context_, kind, kRingCapacity);
  while (true) {
    if (auto offset = ring->try_reserve(n)) return *offset;
    const std::optional<std::uint64_t> oldest = ring->oldest();
    if (!oldest) {
      throw DeviceError(context_->id() + ": staging ring has no room for " + std::to_string(n) +
                        " bytes");  // a request over the capacity: a bug here
    }
    wait_for(lock, *oldest);
  }
}

std::uint64_t Timeline::reserve_upload(Lock& lock, std::uint64_t n) {
  return reserve(lock, upload_, HeapKind::upload, n);
}

std::uint64_t Timeline::reserve_readback(Lock& lock, std::uint64_t n) {
  return reserve(lock, readback_, HeapKind::readback, n);
}

void Timeline::make_timestamps() {
  timestamps_tried_ = true;
  // Copy-queue timestamps where the adapter says it has them, else the
  // compute queue's; a runtime that then refuses the copy-queue query heap
  // (vkd3d 1.6 does not know its type) gets the compute queue's too.
  for (const Lane lane : {timestamp_lane_, Lane::compute}) {
    UINT64 frequency = 0;
    if (FAILED(queue(lane)->GetTimestampFrequency(&frequency)) || frequency == 0) continue;
    D3D12_QUERY_HEAP_DESC desc{};
    desc.Type = lane == Lane::copy ? api::kQueryHeapTypeCopyQueueTimestamp
                                   : D3D12_QUERY_HEAP_TYPE_TIMESTAMP;
    desc.Count = kTimestampSlots;
    ComPtr<ID3D12QueryHeap> heap;
    if (FAILED(context_->device()->CreateQueryHeap(&desc, IID_PPV_ARGS(&heap)))) continue;
    ComPtr<ID3D12Resource> buffer =
        context_->create_buffer(kTimestampSlots * sizeof(std::uint64_t), HeapKind::readback);
    void* mapped = nullptr;
    context_->check(buffer->Map(0, nullptr, &mapped), "ID3D12Resource::Map (timestamps)");
    timestamp_lane_ = lane;
    query_heap_ = std::move(heap);
    timestamp_buffer_ = std::move(buffer);
    timestamp_ticks_ = static_cast<const std::uint64_t*>(mapped);
    timestamp_frequency_ = static_cast<double>(frequency);
    return;
  }
}

Lane Timeline::timestamp_lane(Lock& lock) {
  (void)lock;
  if (!timestamps_tried_) make_timestamps();
  return timestamp_lane_;
}

bool Timeline::write_timestamp(Lock& lock, Work& work, std::function<void(std::uint64_t)> read) {
  if (!timestamps_tried_) make_timestamps();
  if (!query_heap_ || work.commands.lane != timestamp_lane_) return false;
  const std::uint32_t slot = next_slot_;
  next_slot_ = (next_slot_ + 1) % kTimestampSlots;
  // The slot's last reader must have read it before it is written again.
  if (slot_value_[slot] != 0) wait_for(lock, slot_value_[slot]);
  slot_value_[slot] = submitted_ + 1;  // the value `work` will signal
  work.commands.list->EndQuery(query_heap_.Get(), D3D12_QUERY_TYPE_TIMESTAMP, slot);
  work.commands.list->ResolveQueryData(query_heap_.Get(), D3D12_QUERY_TYPE_TIMESTAMP, slot, 1,
                                       timestamp_buffer_.Get(), slot * sizeof(std::uint64_t));
  const std::uint64_t* ticks = timestamp_ticks_ + slot;
  work.on_complete = [ticks, read = std::move(read)] { read(*ticks); };
  return true;
}

}  // namespace exogpu::directml
