#include "fake_drd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "tests/support/temp_dir.hpp"

extern char** environ;

namespace drd::test {

FakeDrd::FakeDrd(std::filesystem::path socket) : path_(std::move(socket)) {
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path_.string();
  if (listen_fd_ < 0 || p.size() >= sizeof addr.sun_path) throw std::runtime_error("FakeDrd: bad socket " + p);
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 8) != 0)
    throw std::runtime_error("FakeDrd: cannot listen on " + p + ": " + std::strerror(errno));
  thread_ = std::thread([this] { serve(); });
}

FakeDrd::~FakeDrd() {
  stop_ = true;
  thread_.join();
  ::close(listen_fd_);
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

void FakeDrd::on(const std::string& method, Handler h) {
  std::lock_guard lock(mu_);
  handlers_[method] = std::move(h);
}

void FakeDrd::reply(const std::string& method, boost::json::value result) {
  on(method, [result](const rpc::Request& r) { return std::vector<std::string>{rpc::result_line(r.id, result)}; });
}

void FakeDrd::fail(const std::string& method, int code, const std::string& message, boost::json::value data) {
  on(method, [=](const rpc::Request& r) {
    return std::vector<std::string>{rpc::error_line(r.id, code, message, data)};
  });
}

std::vector<rpc::Request> FakeDrd::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

void FakeDrd::serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    serve_connection(fd);
    ::close(fd);
  }
}

void FakeDrd::serve_connection(int fd) {
  std::string buf;
  while (!stop_) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    char chunk[4096];
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return;  // drctl hung up
    buf.append(chunk, static_cast<std::size_t>(n));
    for (auto nl = buf.find('\n'); nl != std::string::npos; nl = buf.find('\n')) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      auto parsed = rpc::parse_request(line);
      std::vector<std::string> out;
      if (auto* req = std::get_if<rpc::Request>(&parsed)) {
        Handler h;
        {
          std::lock_guard lock(mu_);
          requests_.push_back(*req);
          if (auto it = handlers_.find(req->method); it != handlers_.end()) h = it->second;
        }
        out = h ? h(*req) : std::vector<std::string>{rpc::error_line(req->id, rpc::method_not_found, "unknown method")};
      } else {
        auto& f = std::get<rpc::ParseFailure>(parsed);
        out = {rpc::error_line(f.id, f.code, f.message)};
      }
      for (const auto& l : out) (void)!::send(fd, l.data(), l.size(), MSG_NOSIGNAL);
    }
  }
}

Run run_drctl(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  TempDir dir("drctl-run");
  const std::string out_file = (dir / "out").string(), err_file = (dir / "err").string();
  const std::string bin = std::string(DRD_BIN_DIR) + "/drctl";
  std::vector<std::string> argv_s{bin};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("DRD_SOCKET=", 0) == 0 || kv.rfind("NO_COLOR=", 0) == 0) continue;
    env_s.emplace_back(kv);
  }
  env_s.insert(env_s.end(), env.begin(), env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot run " + bin + ": " + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  Run r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out_file);
  r.err = read_file(err_file);
  return r;
}

}  // namespace drd::test
