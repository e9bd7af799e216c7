// Streams and events of a DirectML device, on a Timeline each.
#pragma once

#include <memory>

#include "backends/directml/dml_timeline.hpp"
#include "exogpu/device.hpp"

namespace exogpu::directml {

// GPU ticks of an event, filled in when its submission completes (under the
// timeline's lock).
struct Stamp {
  bool valid = false;
  std::uint64_t ticks = 0;
};

class DmlEvent final : public Event {
 public:
  DmlEvent(const Device& device, std::shared_ptr<Timeline> timeline, std::uint64_t value,
           std::shared_ptr<Stamp> stamp)
      : device_(device), timeline_(std::move(timeline)), value_(value), stamp_(std::move(stamp)) {}

  [[nodiscard]] bool query() override;
  void synchronize() override;
  [[nodiscard]] double elapsed_ms(Event& later) override;
  [[nodiscard]] const Device& device() const noexcept override { return device_; }

  [[nodiscard]] const std::shared_ptr<Timeline>& timeline() const noexcept { return timeline_; }
  [[nodiscard]] std::uint64_t value() const noexcept { return value_; }

 private:
  const Device& device_;
  std::shared_ptr<Timeline> timeline_;
  std::uint64_t value_;
  std::shared_ptr<Stamp> stamp_;
};

class DmlStream final : public Stream {
 public:
  DmlStream(Device& device, std::shared_ptr<Context> context);
  ~DmlStream() override;

  [[nodiscard]] Timeline& timeline() const noexcept { return *timeline_; }

 protected:
  void do_copy_h2d(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                   std::size_t n) override;
  void do_copy_d2h(void* dst, const AllocationPtr& src, std::size_t src_offset,
                   std::size_t n) override;
  void do_copy_d2d(const AllocationPtr& dst, std::size_t dst_offset, const AllocationPtr& src,
                   std::size_t src_offset, std::size_t n) override;
  void do_fill(const AllocationPtr& dst, std::size_t offset, std::size_t n,
               std::uint8_t value) override;
  [[nodiscard]] std::shared_ptr<Event> do_record() override;
  void do_wait(const std::shared_ptr<Event>& event) override;
  void do_synchronize() override;
  void do_copy_h2d_sync(const AllocationPtr& dst, std::size_t dst_offset, const void* src,
                        std::size_t n) override;
  void do_copy_d2h_sync(void* dst, const AllocationPtr& src, std::size_t src_offset,
                        std::size_t n) override;

 private:
  std::shared_ptr<Context> context_;
  std::shared_ptr<Timeline> timeline_;
};

}  // namespace exogpu::directml
