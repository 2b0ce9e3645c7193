#pragma once
// Small shared pieces of the renderers (render.cpp, render_tables.cpp):
// translation between the two languages and ANSI painting. Internal to ctl/.
#include <string>
#include <string_view>

#include "ctl/render.hpp"

namespace drd::ctl::text {

inline std::string tr(const RenderOptions& o, std::string_view en, std::string_view zh) {
  return std::string(o.lang == Lang::zh ? zh : en);
}

enum class Tone { good, warn, bad, bold, dim };

inline std::string paint(const RenderOptions& o, Tone t, std::string_view s) {
  if (!o.color || s.empty()) return std::string(s);
  const char* code = "";
  switch (t) {
    case Tone::good: code = "\033[32m"; break;
    case Tone::warn: code = "\033[33m"; break;
    case Tone::bad: code = "\033[31m"; break;
    case Tone::bold: code = "\033[1m"; break;
    case Tone::dim: code = "\033[2m"; break;
  }
  return std::string(code) + std::string(s) + "\033[0m";
}

inline std::string on_off(const RenderOptions& o, bool on) {
  return on ? tr(o, "enabled", "启用") : tr(o, "disabled", "禁用");
}

}  // namespace drd::ctl::text
