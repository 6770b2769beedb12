// The rejections read model: counts by reason and by command kind, and the
// most recent rejections.
#pragma once

#include <array>
#include <vector>

#include "projections/read_model.h"

namespace shop::projections {

// Owned by one thread; not thread-safe.
class Rejections final : public ReadModel {
 public:
  static constexpr size_t kRecent = 100;
  // One past the largest ordinal of each enum, with room for ordinals a
  // newer server adds (counted in the last slot).
  static constexpr size_t kReasons = 32;
  static constexpr size_t kCommands = 32;

  struct Recent {
    Seq seq;
    int64_t timestampNs;
    OperationRejected rejection;
  };

  uint64_t total() const { return total_; }
  uint64_t byReason(RejectReason reason) const { return byReason_[slot(reason)]; }
  uint64_t byCommand(CommandKind kind) const { return byCommand_[slot(kind)]; }
  // The kept rejections, newest last.
  std::vector<const Recent*> recent() const;

 protected:
  void onEvent(const Event& event) override;
  void onReset() override;

 private:
  template <typename E>
  static size_t slot(E e) {
    return std::min<size_t>(static_cast<size_t>(e), kReasons - 1);
  }

  uint64_t total_ = 0;
  std::array<uint64_t, kReasons> byReason_{};
  std::array<uint64_t, kCommands> byCommand_{};
  // A ring: entries are overwritten in place, so their strings keep their
  // buffers and a rejection costs no allocation once the ring is full.
  std::array<Recent, kRecent> ring_{};
  size_t kept_ = 0;  // entries in use
  size_t next_ = 0;  // where the next one goes
};

}  // namespace shop::projections
