#pragma once
// FUZZ_CHECK: the fuzz targets' assertion. A violated property prints what was wrong and
// aborts, which libFuzzer records as a crash (with the input saved as an artifact), exactly
// like a sanitizer report. Used instead of assert() so it also fires in NDEBUG builds.
#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(cond, what)                                                                \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s\n  %s\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                                \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)
