#include "core/recovery.h"

#include <chrono>
#include <filesystem>

namespace shop {

RecoveryReport recoverEngine(Journal& journal, Engine& engine) {
  auto start = std::chrono::steady_clock::now();
  RecoveryReport report;
  const std::string& dir = journal.config().dir;
  JournalEnd end = journalEnd(dir);
  for (const auto& [seq, path] : listSnapshots(dir)) {
    if (seq > end.lastSeq) {
      // Only a power loss under --fsync interval or never leaves this: the
      // snapshot was synced, the journal's tail was not.
      report.skipped.push_back(path + ": seq " + std::to_string(seq) +
                               " is past the journal's last seq " + std::to_string(end.lastSeq));
      report.setAside.push_back(path);
      continue;
    }
    try {
      SnapshotInfo head = readSnapshotInfo(path);
      if (head.serverId != end.serverId) {
        report.skipped.push_back(path + ": written by server " + serverIdHex(head.serverId) +
                                 ", the journal is server " + serverIdHex(end.serverId) + "'s");
        report.setAside.push_back(path);
        continue;
      }
      report.snapshot = engine.restoreSnapshot(path);
      report.snapshotPath = path;
      break;
    } catch (const SnapshotCorrupt& e) {
      report.skipped.push_back(e.what());
      report.setAside.push_back(path);
    } catch (const std::system_error& e) {
      report.skipped.push_back(path + ": " + e.what());
    }
  }
  // A snapshot passed over is set aside, never left where a later start or
  // the writer's clean-up could take it for a good one: a snapshot past the
  // journal's end would describe events the restarted server writes anew.
  for (const auto& path : report.setAside) {
    std::error_code error;
    std::filesystem::rename(path, path + ".unused", error);
  }
  if (!report.snapshot && !report.skipped.empty() && end.lastSeq == 0) {
    throw JournalCorrupt(dir, 0,
                         "snapshots exist, but the journal holds no segment to go with them");
  }
  Seq from = report.snapshot ? report.snapshot->replayFrom : 1;
  Seq folded = report.snapshot ? report.snapshot->seq : 0;
  report.journal = journal.recover(
      [&engine](Seq, kj::ArrayPtr<const capnp::word> message) { engine.recover(message); }, from);
  report.replayed = report.journal.headSeq > folded ? report.journal.headSeq - folded : 0;
  engine.finishRecovery(report.journal.serverId != 0 ? report.journal.serverId
                        : report.snapshot            ? report.snapshot->serverId
                                                     : 0);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace shop
