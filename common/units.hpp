#pragma once
// Durations ("200ms", "1s", "5m", "6h", "7d", "1h30m") and sizes ("16MB", "512KiB").
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace drd {

using Millis = std::chrono::milliseconds;

// Returns nullopt on anything that is not a positive-or-zero duration with a unit.
std::optional<Millis> parse_duration(std::string_view s);
// Shortest exact form: 1500ms -> "1.5s", 3600000 -> "1h".
std::string format_duration(Millis d);

// Sizes: B, KB/MB/GB/TB (powers of 1024, as operators expect), KiB/MiB/GiB/TiB too.
std::optional<std::uint64_t> parse_size(std::string_view s);
std::string format_size(std::uint64_t bytes);

}  // namespace drd
