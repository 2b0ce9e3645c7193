#pragma once
// The control socket: JSON-RPC 2.0, one object per line, many clients at once.
// Access: the peer's uid/gid come from SO_PEERCRED; root and members of
// control.admin_group may call everything, other peers only read-only methods.
// Every state-changing call is audited. A line over 1 MiB, malformed JSON or an
// unknown method gets a JSON-RPC error; a client that stops reading is dropped
// once 8 MiB of replies pile up, so no client can block the daemon.
#include <boost/asio.hpp>
#include <filesystem>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "daemon/daemon.hpp"

namespace drd {

class ControlServer {
 public:
  ControlServer(asio::io_context& io, Daemon& daemon);
  ~ControlServer();
  // Binds the socket (0660), refusing to take over one that a live drd still serves.
  Status listen(const std::filesystem::path& path, const std::string& socket_group);
  // Adopts an already-listening socket passed by systemd (socket activation).
  Status adopt(int fd);
  void close();  // stops accepting and removes the socket file

 private:
  class Connection;
  void accept();
  bool is_admin(uid_t uid, gid_t gid) const;

  asio::io_context& io_;
  Daemon& daemon_;
  asio::local::stream_protocol::acceptor acceptor_;
  std::filesystem::path path_;
  bool owns_path_ = false;
  int connections_ = 0;
};

}  // namespace drd
