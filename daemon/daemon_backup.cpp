// Backups through the control socket: not wired to daemon/backup/ yet.
#include "daemon/daemon.hpp"

namespace drd {

struct Daemon::BackupRuntime {};

void Daemon::backup_start() {}
void Daemon::backup_stop() {}

void Daemon::backup_create(const json::object&, Reply reply, ProgressSink) {
  reply(make_error(Errc::unsupported, "'backup' is not supported by this drd yet"));
}
Result<json::value> Daemon::backup_list() {
  return make_error(Errc::unsupported, "'backups' is not supported by this drd yet");
}
void Daemon::backup_verify(const json::object&, Reply reply) {
  reply(make_error(Errc::unsupported, "'verify' is not supported by this drd yet"));
}
void Daemon::restore(const json::object&, Reply reply, ProgressSink) {
  reply(make_error(Errc::unsupported, "'restore' is not supported by this drd yet"));
}

}  // namespace drd
