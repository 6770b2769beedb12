// Recovery: the engine back where the journal's directory left it, from
// the newest usable snapshot and the journal after it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/engine.h"
#include "core/journal.h"
#include "core/snapshot.h"

namespace shop {

struct RecoveryReport {
  JournalContents journal;
  std::optional<SnapshotInfo> snapshot;  // the one recovery started from
  std::string snapshotPath;
  std::vector<std::string> skipped;  // snapshots not used, each with why
  // Of those, the ones renamed to <name>.unused: damaged, another server's,
  // or past the journal's end.
  std::vector<std::string> setAside;
  Seq replayed = 0;  // events applied to aggregates after the snapshot
  double seconds = 0;
};

// Before journal.start() and the engine's first submit: restores the newest
// snapshot that reads whole, belongs to this journal and is not past its
// end; replays the journal from that snapshot's replayFrom (from seq 1
// without one); ends the engine's recovery. Throws JournalCorrupt as
// readJournal does, and when snapshots exist but none is usable while the
// journal no longer starts at seq 1.
RecoveryReport recoverEngine(Journal& journal, Engine& engine);

}  // namespace shop
