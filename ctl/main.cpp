// drctl: the administrators' command-line client of drd (docs/drctl.md).
#include "ctl/run.hpp"

int main(int argc, char** argv) { return drd::ctl::run(argc, argv); }
