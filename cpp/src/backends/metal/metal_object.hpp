// Ownership of Objective-C objects from C++ under manual retain/release: one
// reference per Retained, released when it goes. Metal's new*/copy* methods
// hand back a reference the caller owns (adopt it); everything else hands
// back a borrowed or autoreleased object (retain it to keep it).
#pragma once

#import <Foundation/Foundation.h>

#include <exception>
#include <string>
#include <utility>

namespace exogpu::metal {

template <typename T>  // an Objective-C object pointer type, e.g. id<MTLBuffer>
class Retained {
 public:
  Retained() noexcept = default;
  [[nodiscard]] static Retained adopt(T object) noexcept { return Retained(object); }
  [[nodiscard]] static Retained retain(T object) noexcept {
    if (object != nil) [object retain];
    return Retained(object);
  }
  Retained(const Retained& other) noexcept : object_(other.object_) {
    if (object_ != nil) [object_ retain];
  }
  Retained(Retained&& other) noexcept : object_(std::exchange(other.object_, nil)) {}
  Retained& operator=(Retained other) noexcept {
    std::swap(object_, other.object_);
    return *this;
  }
  ~Retained() {
    if (object_ != nil) [object_ release];
  }

  [[nodiscard]] T get() const noexcept { return object_; }
  explicit operator bool() const noexcept { return object_ != nil; }

 private:
  explicit Retained(T object) noexcept : object_(object) {}
  T object_ = nil;
};

// Runs `body` inside an autorelease pool, so that the autoreleased objects
// Metal returns (command buffers, encoders, strings) are released when it
// ends, on any thread. A C++ exception must not unwind through
// @autoreleasepool under manual retain/release (the pool would never be
// popped), so it is caught inside and rethrown once the pool is gone.
template <typename Body>
void with_autorelease_pool(Body&& body) {
  std::exception_ptr error;
  @autoreleasepool {
    try {
      body();
    } catch (...) {
      error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// UTF-8 text of an NSString (empty for nil).
[[nodiscard]] inline std::string utf8(NSString* text) {
  if (text == nil) return {};
  const char* bytes = [text UTF8String];
  return bytes != nullptr ? std::string(bytes) : std::string();
}

}  // namespace exogpu::metal
