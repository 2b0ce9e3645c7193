#pragma once
// Result<T>: a value or an Error. Errors carry a stable code, a message for
// the operator, and optionally a hint saying what to do about it.
#include <string>
#include <utility>
#include <variant>

namespace drd {

enum class Errc {
  invalid_argument,   // the caller asked for something malformed
  not_found,          // a named node, backup or file does not exist
  unavailable,        // a node or service cannot be reached
  timeout,            // an operation did not finish within its deadline
  io,                 // the operating system refused a read or write
  corrupt,            // data failed a checksum or integrity check
  conflict,           // the state changed underneath (compare-and-set lost)
  refused,            // policy forbids it (unhealthy target, lag, ...)
  unsupported,        // this drd does not implement it (yet)
  permission_denied,  // the caller may not do this
  internal,
};

const char* errc_name(Errc c);

struct Error {
  Errc code = Errc::internal;
  std::string message;
  std::string hint;
};

inline Error make_error(Errc c, std::string msg, std::string hint = {}) {
  return Error{c, std::move(msg), std::move(hint)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}
  Result(Error e) : v_(std::move(e)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  // By value so `for (auto& x : f().value())` does not dangle.
  T value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() { return Unit{}; }

}  // namespace drd
