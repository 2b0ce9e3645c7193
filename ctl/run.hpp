#pragma once
// drctl's whole life: parse the command line, find the socket, call drd,
// print the reply, and turn the outcome into the exit code
// (0 done, 1 refused/failed, 2 usage, 3 unreachable). Writes to stdout/stderr.
namespace drd::ctl {

int run(int argc, char** argv);

}  // namespace drd::ctl
