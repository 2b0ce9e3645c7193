// Access control over SO_PEERCRED: an unprivileged member of the socket's
// group may read but every state-changing method is refused and audited.
#include <catch2/catch.hpp>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace json = boost::json;

namespace {

// Calls `method` as uid/gid 65534 (nobody/nogroup) in a child; returns the JSON-RPC code (0 = success).
int call_as_nobody(const std::filesystem::path& socket, const std::string& method, json::object params = {}) {
  int pipefd[2];
  REQUIRE(pipe(pipefd) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(pipefd[0]);
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(90);
    drd::rpc::Client c(socket.string(), std::chrono::seconds(10));
    auto r = c.call(method, std::move(params));
    int code = 0;
    if (auto* e = std::get_if<drd::rpc::CallError>(&r)) code = e->unreachable ? 1 : e->code;
    (void)!write(pipefd[1], &code, sizeof code);
    _exit(0);
  }
  close(pipefd[1]);
  int code = 12345;
  REQUIRE(read(pipefd[0], &code, sizeof code) == sizeof code);
  close(pipefd[0]);
  int st;
  waitpid(pid, &st, 0);
  return code;
}

}  // namespace

TEST_CASE("unprivileged callers may read but not change anything", "[e2e][access]") {
  if (::getuid() != 0) {
    WARN("skipped: needs root to switch to the nobody user");
    return;
  }
  DrdFixture f;
  f.start();
  CHECK(call_as_nobody(f.socket(), "status") == 0);
  CHECK(call_as_nobody(f.socket(), "history") == 0);
  for (auto* m : {"monitoring.start", "monitoring.stop", "auto_failover.enable", "auto_failover.disable", "reload",
                  "failover", "switchover", "rejoin", "clone", "backup.create", "backup.verify", "restore"}) {
    INFO(m);
    CHECK(call_as_nobody(f.socket(), m, {{"node", "secondary1"}}) == drd::rpc::permission_denied);
  }
  // Nothing changed, and every refusal is in the audit log with the caller's uid.
  CHECK(f.call("status").at("monitoring").as_bool());
  auto audit = f.call("audit", {{"limit", 100}}).as_array();
  int refused = 0;
  for (auto& a : audit)
    if (a.at("uid").as_int64() == 65534 && !a.at("ok").as_bool()) ++refused;
  CHECK(refused == 12);
}

TEST_CASE("the control socket is created 0660", "[e2e][access]") {
  DrdFixture f;
  f.start();
  auto perms = std::filesystem::status(f.socket()).permissions();
  using P = std::filesystem::perms;
  CHECK((perms & P::all) == (P::owner_read | P::owner_write | P::group_read | P::group_write));
}
