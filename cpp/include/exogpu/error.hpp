// Typed errors of the exogpu core. Each derives from the standard type a C++
// caller would expect (OutOfMemory is a std::bad_alloc, InvalidArgument a
// std::invalid_argument) and from exogpu::Error, so one catch clause can take
// them all. The bindings map each to the Python exception of the same name.
#pragma once

#include <new>
#include <stdexcept>
#include <string>

namespace exogpu {

// Common base: carries the message, since std::bad_alloc cannot.
class Error {
 public:
  explicit Error(std::string message) : message_(std::move(message)) {}
  virtual ~Error() = default;
  [[nodiscard]] const std::string& message() const noexcept { return message_; }

 private:
  std::string message_;
};

class OutOfMemory : public std::bad_alloc, public Error {
 public:
  explicit OutOfMemory(std::string message) : Error(std::move(message)) {}
  [[nodiscard]] const char* what() const noexcept override { return message().c_str(); }
};

class InvalidArgument : public std::invalid_argument, public Error {
 public:
  explicit InvalidArgument(const std::string& message)
      : std::invalid_argument(message), Error(message) {}
};

class BackendUnavailable : public std::runtime_error, public Error {
 public:
  explicit BackendUnavailable(const std::string& message)
      : std::runtime_error(message), Error(message) {}
};

class DeviceError : public std::runtime_error, public Error {
 public:
  explicit DeviceError(const std::string& message)
      : std::runtime_error(message), Error(message) {}
};

}  // namespace exogpu
