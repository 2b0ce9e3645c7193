#include "common/result.hpp"

namespace drd {

const char* errc_name(Errc c) {
  switch (c) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::unavailable: return "unavailable";
    case Errc::timeout: return "timeout";
    case Errc::io: return "io";
    case Errc::corrupt: return "corrupt";
    case Errc::conflict: return "conflict";
    case Errc::refused: return "refused";
    case Errc::unsupported: return "unsupported";
    case Errc::permission_denied: return "permission_denied";
    case Errc::internal: return "internal";
  }
  return "internal";
}

}  // namespace drd
