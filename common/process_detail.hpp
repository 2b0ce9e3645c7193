#pragma once
// Internals shared by RealProcessRunner::run (process.cpp) and ::spawn (process_child.cpp).
#include <sys/types.h>

#include "common/process.hpp"

namespace drd::detail {

struct Started {
  pid_t pid = -1;     // also the process group id
  int exit_fd = -1;   // pidfd (readable once the child exits), -1 when unavailable; caller closes
};

// Forks and execs `spec` (user switch, cwd, environment, new process group) with the child's
// stdin/stdout/stderr on `fd_in` (-1 = /dev/null), `fd_out`, `fd_err`. Returns once exec
// succeeded, or an Error naming the step that failed (the child is reaped then).
Result<Started> start_process(const ProcessSpec& spec, int fd_in, int fd_out, int fd_err);

void kill_group(pid_t pgid, int sig);
// True once `pid` has exited; it is left a zombie so its pid/pgid stay reserved.
bool has_exited(pid_t pid);

}  // namespace drd::detail
