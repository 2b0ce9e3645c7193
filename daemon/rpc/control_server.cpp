#include "daemon/rpc/control_server.hpp"

#include <grp.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <deque>
#include <vector>

#include "common/clock.hpp"
#include "common/rpc.hpp"
#include "daemon/rpc/params.hpp"

namespace drd {

namespace {

constexpr std::size_t kMaxPendingOutput = 8u << 20;
constexpr int kMaxConnections = 256;

// Parameters as written to the audit log: anything that looks like a secret is masked.
std::string audit_params(const json::object& params) {
  json::object copy = params;
  for (auto& kv : copy) {
    std::string k(kv.key());
    for (auto& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (k.find("password") != std::string::npos || k.find("key") != std::string::npos ||
        k.find("token") != std::string::npos || k.find("secret") != std::string::npos)
      kv.value() = "***";
    else if (kv.value().is_string())
      kv.value() = redact_url(std::string(kv.value().as_string()));
  }
  return json::serialize(copy);
}

// The audit copy of a result message: an error may quote a parameter back ("no node named
// 'postgresql://u:pw@h/db'"), so every URL-like or password= word in it is redacted before it
// is stored (found by tests/security).
std::string audit_result(const std::string& message) {
  std::string out;
  std::size_t i = 0;
  while (i < message.size()) {
    std::size_t end = std::min(message.find_first_of(" \t\n'\"", i), message.size());
    if (end == i) {
      out.push_back(message[i++]);
      continue;
    }
    std::string word = message.substr(i, end - i), lower = word;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += (word.find("://") != std::string::npos || lower.find("password=") != std::string::npos) ? redact_url(word)
                                                                                                   : word;
    i = end;
  }
  return out.substr(0, 500);
}

}  // namespace

class ControlServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ControlServer& server, asio::local::stream_protocol::socket sock)
      : server_(server), sock_(std::move(sock)) {}

  void start() {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(sock_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      caller_.uid = cred.uid;
      caller_.gid = cred.gid;
      caller_.pid = cred.pid;
      caller_.admin = server_.is_admin(cred.uid, cred.gid);
    }
    read();
  }

  ~Connection() { --server_.connections_; }

 private:
  void read() {
    auto self = shared_from_this();
    asio::async_read_until(sock_, asio::dynamic_buffer(in_, rpc::kMaxMessageBytes + 1), '\n',
                           [this, self](boost::system::error_code ec, std::size_t n) {
                             if (ec == asio::error::not_found) {
                               // Longer than 1 MiB without a newline: answer and hang up.
                               send(rpc::error_line(nullptr, rpc::invalid_request, "request larger than 1 MiB"), true);
                               return;
                             }
                             if (ec) return;  // client went away
                             std::string line = in_.substr(0, n - 1);
                             in_.erase(0, n);
                             if (!line.empty() && line.back() == '\r') line.pop_back();
                             if (!line.empty()) handle(line);
                             read();
                           });
  }

  void handle(const std::string& line) {
    auto parsed = rpc::parse_request(line);
    if (auto* f = std::get_if<rpc::ParseFailure>(&parsed)) {
      send(rpc::error_line(f->id, f->code, f->message));
      return;
    }
    auto req = std::get<rpc::Request>(std::move(parsed));
    const rpc::Method* method = rpc::find_method(req.method);
    if (!method) {
      send(rpc::error_line(req.id, rpc::method_not_found, "unknown method '" + req.method + "'"));
      return;
    }
    const bool read_only = method->read_only;
    if (!read_only && !caller_.admin) {
      std::string msg = "permission denied: uid " + std::to_string(caller_.uid) + " may not call '" + req.method +
                        "' (needs root or membership of the admin group)";
      audit(req, false, msg);
      send(rpc::error_line(req.id, rpc::permission_denied, msg));
      return;
    }
    // "progress" is the one parameter every method takes (notifications before the reply).
    auto progress_p = rpc::flag_param(req.params, "progress");
    if (!progress_p) {
      if (!read_only) audit(req, false, progress_p.error().message);
      send(rpc::error_line(req.id, progress_p.error()));
      return;
    }
    auto self = shared_from_this();
    asio::post(server_.daemon_.control(), [this, self, req = std::move(req), read_only, progress_p]() mutable {
      auto id = req.id;
      auto progress = [self, this](json::object p) {
        asio::post(sock_.get_executor(), [self, this, p = std::move(p)]() mutable {
          send(rpc::notification_line("progress", std::move(p)));
        });
      };
      bool want_progress = *progress_p;
      server_.daemon_.dispatch(
          req.method, req.params, caller_,
          [this, self, req, read_only](Result<json::value> r) {
            if (!read_only) audit(req, r.ok(), r.ok() ? "ok" : r.error().message);
            std::string out = r.ok() ? rpc::result_line(req.id, std::move(r.value())) : rpc::error_line(req.id, r.error());
            asio::post(sock_.get_executor(), [this, self, out = std::move(out)]() mutable { send(std::move(out)); });
          },
          want_progress ? ProgressSink(progress) : ProgressSink());
    });
  }

  void audit(const rpc::Request& req, bool ok, const std::string& result) {
    AuditRecord a{to_unix_ms(std::chrono::system_clock::now()), caller_.uid, caller_.pid, req.method,
                  audit_params(req.params), ok, audit_result(result)};
    if (auto st = server_.daemon_.store().append_audit(a); !st)
      spdlog::error("cannot write audit log: {}", st.error().message);
  }

  // Queues a reply; writes run one at a time in order.
  void send(std::string data, bool close_after = false) {
    pending_bytes_ += data.size();
    if (pending_bytes_ > kMaxPendingOutput) {
      spdlog::warn("control client pid {} is not reading its replies; dropping it", caller_.pid);
      boost::system::error_code ec;
      sock_.close(ec);
      return;
    }
    out_.push_back(std::move(data));
    close_after_ = close_after_ || close_after;
    if (!writing_) write();
  }

  void write() {
    if (out_.empty()) {
      writing_ = false;
      if (close_after_) {
        boost::system::error_code ec;
        sock_.shutdown(asio::socket_base::shutdown_both, ec);
        sock_.close(ec);
      }
      return;
    }
    writing_ = true;
    auto self = shared_from_this();
    asio::async_write(sock_, asio::buffer(out_.front()), [this, self](boost::system::error_code ec, std::size_t n) {
      pending_bytes_ -= n;
      out_.pop_front();
      if (ec) {
        out_.clear();
        writing_ = false;
        return;
      }
      write();
    });
  }

  ControlServer& server_;
  asio::local::stream_protocol::socket sock_;
  std::string in_;
  std::deque<std::string> out_;
  std::size_t pending_bytes_ = 0;
  bool writing_ = false;
  bool close_after_ = false;
  Caller caller_;
};

ControlServer::ControlServer(asio::io_context& io, Daemon& daemon) : io_(io), daemon_(daemon), acceptor_(io) {}

ControlServer::~ControlServer() { close(); }

Status ControlServer::listen(const std::filesystem::path& path, const std::string& socket_group) {
  std::error_code fec;
  std::filesystem::create_directories(path.parent_path(), fec);
  if (std::filesystem::exists(path)) {
    // A socket file is left behind by a crash; a live one belongs to another drd.
    rpc::Client probe(path.string(), std::chrono::milliseconds(500));
    auto r = probe.call("ping");
    if (std::holds_alternative<json::value>(r) ||
        !std::get<rpc::CallError>(r).unreachable)
      return make_error(Errc::conflict, "another drd is already serving " + path.string(),
                        "stop it first, or give this one another control.socket");
    std::filesystem::remove(path, fec);
  }
  boost::system::error_code ec;
  asio::local::stream_protocol::endpoint ep(path.string());
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (ec) return make_error(Errc::io, "cannot bind control socket " + path.string() + ": " + ec.message());
  owns_path_ = true;
  path_ = path;
  // 0660: the owner and the socket's group; everyone else is kept out by the file mode.
  ::chmod(path.c_str(), 0660);
  if (!socket_group.empty()) {
    if (group* g = ::getgrnam(socket_group.c_str()); g) {
      if (::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0)
        spdlog::warn("cannot give control socket to group {}: {}", socket_group, std::strerror(errno));
    } else {
      spdlog::warn("control.socket_group '{}' does not exist; socket stays in drd's group", socket_group);
    }
  }
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::io, "cannot listen on " + path.string() + ": " + ec.message());
  accept();
  return ok_status();
}

Status ControlServer::adopt(int fd) {
  boost::system::error_code ec;
  acceptor_.assign(asio::local::stream_protocol(), fd, ec);
  if (ec) return make_error(Errc::io, "cannot use the socket passed by systemd: " + ec.message());
  accept();
  return ok_status();
}

void ControlServer::close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  if (owns_path_) {
    std::error_code fec;
    std::filesystem::remove(path_, fec);
    owns_path_ = false;
  }
}

void ControlServer::accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, asio::local::stream_protocol::socket sock) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      if (connections_ >= kMaxConnections) {
        spdlog::warn("too many control connections ({}); refusing one", connections_);
      } else {
        ++connections_;
        std::make_shared<Connection>(*this, std::move(sock))->start();
      }
    }
    accept();
  });
}

bool ControlServer::is_admin(uid_t uid, gid_t gid) const {
  if (uid == 0) return true;
  const std::string& admin_group = daemon_.config().control.admin_group;
  if (admin_group.empty()) return uid == ::geteuid();  // no admin group: only drd's own user besides root
  group* g = ::getgrnam(admin_group.c_str());
  if (!g) return uid == ::geteuid();
  if (gid == g->gr_gid) return true;
  passwd* pw = ::getpwuid(uid);
  if (!pw) return false;
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) return false;
  }
  for (int i = 0; i < n; ++i)
    if (groups[static_cast<std::size_t>(i)] == g->gr_gid) return true;
  return false;
}

}  // namespace drd
