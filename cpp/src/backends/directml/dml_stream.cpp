#include "backends/directml/dml_stream.hpp"

#include <algorithm>
#include <cstring>

#include "backends/directml/dml_allocation.hpp"
#include "exogpu/error.hpp"

namespace exogpu::directml {

namespace {

// Host copies move through the staging rings in pieces of this size, so the
// host fills one piece while the GPU copies the one before.
constexpr std::uint64_t kPiece = std::uint64_t{4} << 20;
static_assert(kPiece * 4 <= Timeline::ring_capacity());

}  // namespace

bool DmlEvent::query() {
  auto lock = timeline_->lock();
  return timeline_->complete(lock, value_);
}

void DmlEvent::synchronize() {
  auto lock = timeline_->lock();
  timeline_->wait_for(lock, value_);
}

double DmlEvent::elapsed_ms(Event& later) {
  auto* other = dynamic_cast<DmlEvent*>(&later);
  if (other == nullptr || &other->device_ != &device_) {
    throw InvalidArgument("elapsed_ms: both events must come from " + device_.id() +
                          " (the later one is from " + later.device().id() + ")");
  }
  if (other->timeline_ != timeline_) {
    // Each D3D12 queue counts time on its own clock.
    throw InvalidArgument("elapsed_ms: the events come from two streams of " + device_.id() +
                          ", whose queues keep separate clocks");
  }
  auto lock = timeline_->lock();
  if (!timeline_->complete(lock, value_) || !timeline_->complete(lock, other->value_)) {
    throw InvalidArgument("elapsed_ms: both events must be complete");
  }
  if (!stamp_->valid || !other->stamp_->valid) {
    throw DeviceError(device_.id() + ": this device's queues write no timestamps");
  }
  const double ticks = static_cast<double>(other->stamp_->ticks) -
                       static_cast<double>(stamp_->ticks);
  return ticks * 1000.0 / timeline_->timestamp_frequency();
}

DmlStream::DmlStream(Device& device, std::shared_ptr<Context> context)
    : Stream(device), context_(context), timeline_(std::make_shared<Timeline>(std::move(context))) {}

DmlStream::~DmlStream() {
  try {
    do_synchronize();
  } catch (...) {
    // The work is finished or the device is gone; events keep the timeline.
  }
}

void DmlStream::do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                            std::size_t n) {
  auto lock = timeline_->lock();
  // Earlier readbacks on this stream may still be due to write this memory.
  timeline_->wait_for_host_writes(lock);
  const auto* from = static_cast<const std::byte*>(src);
  for (std::size_t done = 0; done < n;) {
    const std::uint64_t piece = std::min<std::uint64_t>(kPiece, n - done);
    const std::uint64_t staged = timeline_->reserve_upload(lock, piece);
    std::memcpy(timeline_->upload_ring().data(staged), from + done, piece);
    Work work = timeline_->begin(lock, Lane::copy);
    work.commands.list->CopyBufferRegion(resource_of(dst), dst_offset + done,
                                         timeline_->upload_ring().resource(), staged, piece);
    work.allocations.push_back(dst);
    timeline_->submit(lock, std::move(work));
    done += piece;
  }
}

void DmlStream::do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                            std::size_t n) {
  auto lock = timeline_->lock();
  auto* to = static_cast<std::byte*>(dst);
  for (std::size_t done = 0; done < n;) {
    const std::uint64_t piece = std::min<std::uint64_t>(kPiece, n - done);
    const std::uint64_t staged = timeline_->reserve_readback(lock, piece);
    Work work = timeline_->begin(lock, Lane::copy);
    StagingRing& ring = timeline_->readback_ring();
    work.commands.list->CopyBufferRegion(ring.resource(), staged, resource_of(src),
                                         src_offset + done, piece);
    work.allocations.push_back(src);
    work.on_complete = [&ring, staged, out = to + done, piece] {
      std::memcpy(out, ring.data(staged), piece);
    };
    work.writes_host = true;
    timeline_->submit(lock, std::move(work));
    done += piece;
  }
}

void DmlStream::do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset,
                            const AllocationPtr& src, std::size_t src_offset, std::size_t n) {
  auto lock = timeline_->lock();
  if (resource_of(dst) != resource_of(src)) {
    Work work = timeline_->begin(lock, Lane::copy);
    work.commands.list->CopyBufferRegion(resource_of(dst), dst_offset, resource_of(src),
                                         src_offset, n);
    work.allocations = {dst, src};
    timeline_->submit(lock, std::move(work));
    return;
  }
  // One resource cannot be a copy's source and destination at once: the
  // bytes go through a scratch buffer, in two submissions (a buffer's state
  // returns to common between them).
  ComPtr<ID3D12Resource> scratch = context_->create_buffer(n, HeapKind::device);
  Work first = timeline_->begin(lock, Lane::copy);
  first.commands.list->CopyBufferRegion(scratch.Get(), 0, resource_of(src), src_offset, n);
  first.allocations = {src};
  first.objects.push_back(scratch);
  timeline_->submit(lock, std::move(first));
  Work second = timeline_->begin(lock, Lane::copy);
  second.commands.list->CopyBufferRegion(resource_of(dst), dst_offset, scratch.Get(), 0, n);
  second.allocations = {dst};
  second.objects.push_back(std::move(scratch));
  timeline_->submit(lock, std::move(second));
}

void DmlStream::do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
                        std::uint8_t value) {
  // Copy queues have no fill: one staged piece of the pattern is copied
  // over the whole range.
  auto lock = timeline_->lock();
  const std::uint64_t piece = std::min<std::uint64_t>(kPiece, n);
  const std::uint64_t staged = timeline_->reserve_upload(lock, piece);
  std::memset(timeline_->upload_ring().data(staged), value, piece);
  Work work = timeline_->begin(lock, Lane::copy);
  for (std::size_t done = 0; done < n;) {
    const std::uint64_t length = std::min<std::uint64_t>(piece, n - done);
    work.commands.list->CopyBufferRegion(resource_of(dst), offset + done,
                                         timeline_->upload_ring().resource(), staged, length);
    done += length;
  }
  work.allocations.push_back(dst);
  timeline_->submit(lock, std::move(work));
}

std::shared_ptr<Event> DmlStream::do_record() {
  auto lock = timeline_->lock();
  Work work = timeline_->begin(lock, timeline_->timestamp_lane(lock));
  auto stamp = std::make_shared<Stamp>();
  (void)timeline_->write_timestamp(lock, work, [stamp](std::uint64_t ticks) {
    stamp->ticks = ticks;
    stamp->valid = true;
  });
  const std::uint64_t value = timeline_->submit(lock, std::move(work));
  return std::make_shared<DmlEvent>(device(), timeline_, value, std::move(stamp));
}

void DmlStream::do_wait(const std::shared_ptr<Event>& event) {
  auto* dml_event = dynamic_cast<DmlEvent*>(event.get());
  if (dml_event != nullptr && dml_event->timeline() == timeline_) return;  // in order already
  if (dml_event != nullptr && &dml_event->timeline()->context() == context_.get()) {
    Timeline& other = *dml_event->timeline();
    bool on_host = false;
    {
      auto other_lock = other.lock();
      if (other.complete(other_lock, dml_event->value())) return;
      // Readbacks before the event write host memory on the host: later
      // work here may read that memory at once, so the host waits.
      on_host = other.host_writes_pending(other_lock, dml_event->value());
    }
    if (!on_host) {
      auto lock = timeline_->lock();
      timeline_->gpu_wait(lock, other.fence(), dml_event->value());
      return;
    }
  }
  // Another device or backend, or host work to wait for: the host waits
  // before anything more is enqueued.
  event->synchronize();
}

void DmlStream::do_synchronize() {
  auto lock = timeline_->lock();
  timeline_->wait_all(lock);
}

void DmlStream::do_copy_h2d_sync(const AllocationPtr& dst, std::size_t dst_offset,
                                 const void* src, std::size_t n) {
  if (void* mapped = dst->host_ptr(); mapped != nullptr) {
    auto lock = timeline_->lock();
    timeline_->wait_all(lock);
    std::memcpy(static_cast<std::byte*>(mapped) + dst_offset, src, n);
    return;
  }
  do_copy_h2d(dst, dst_offset, src, n);
  do_synchronize();
}

void DmlStream::do_copy_d2h_sync(void* dst, const AllocationPtr& src, std::size_t src_offset,
                                 std::size_t n) {
  if (const void* mapped = src->host_ptr(); mapped != nullptr) {
    auto lock = timeline_->lock();
    timeline_->wait_all(lock);
    std::memcpy(dst, static_cast<const std::byte*>(mapped) + src_offset, n);
    return;
  }
  do_copy_d2h(dst, src, src_offset, n);
  do_synchronize();
}

}  // namespace exogpu::directml
