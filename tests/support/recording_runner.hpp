#pragma once
// RecordingRunner: a fake ProcessRunner for unit tests. It records every
// ProcessSpec it is given and answers with scripted outcomes, so code that
// drives pg_ctl / pg_rewind / pg_basebackup can be checked without running them.
//
// Scripts are matched in the order they were added: the first rule whose
// `match` is a substring of the space-joined argv answers (a rule with
// `times` > 0 is used up after that many calls). With no matching rule the
// default outcome (exit 0, no output) is returned.
//
// Threading: not thread-safe; one test drives it.
#include <string>
#include <vector>

#include "common/process.hpp"

namespace drd::test {

class RecordingRunner : public ProcessRunner {
 public:
  struct Rule {
    std::string match;           // substring of the joined command line
    Result<ProcessOutcome> answer{ProcessOutcome{}};
    int times = 0;               // 0 = unlimited
  };

  // Answers commands containing `match` with the given exit code and output.
  RecordingRunner& on(std::string match, int exit_code, std::string output = {}, int times = 0) {
    ProcessOutcome o;
    o.exit_code = exit_code;
    o.output = std::move(output);
    rules_.push_back(Rule{std::move(match), Result<ProcessOutcome>(o), times});
    return *this;
  }
  // Answers commands containing `match` with an Error (could not start).
  RecordingRunner& fail_start(std::string match, Error e, int times = 0) {
    rules_.push_back(Rule{std::move(match), Result<ProcessOutcome>(std::move(e)), times});
    return *this;
  }
  RecordingRunner& on_timeout(std::string match, int times = 0) {
    ProcessOutcome o;
    o.timed_out = true;
    o.signal = 15;
    rules_.push_back(Rule{std::move(match), Result<ProcessOutcome>(o), times});
    return *this;
  }

  Result<ProcessOutcome> run(const ProcessSpec& spec) override {
    calls_.push_back(spec);
    const std::string line = joined(spec);
    for (auto& r : rules_) {
      if (r.times < 0) continue;  // used up
      if (line.find(r.match) == std::string::npos) continue;
      if (r.times > 0 && --r.times == 0) r.times = -1;
      return r.answer;
    }
    return ProcessOutcome{0, 0, false, {}};
  }

  const std::vector<ProcessSpec>& calls() const { return calls_; }
  // Command lines (argv joined by spaces), in call order.
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    for (const auto& c : calls_) out.push_back(joined(c));
    return out;
  }
  // The first recorded call whose command line contains `needle`, or nullptr.
  const ProcessSpec* find(const std::string& needle) const {
    for (const auto& c : calls_)
      if (joined(c).find(needle) != std::string::npos) return &c;
    return nullptr;
  }
  static std::string joined(const ProcessSpec& s) {
    std::string line;
    for (const auto& a : s.argv) {
      if (!line.empty()) line += ' ';
      line += a;
    }
    return line;
  }

 private:
  std::vector<Rule> rules_;
  std::vector<ProcessSpec> calls_;
};

}  // namespace drd::test
