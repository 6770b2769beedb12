#include "projections/read_models.h"

#include <algorithm>

namespace shop::projections {

ReadModels::ReadModels(const ReadModelsConfig& config)
    : clock(config.clock),
      active(config.clock, config.activeWindow, customers),
      gate(config.clock, config.gateWindow),
      throughput(config.clock) {}

void ReadModels::apply(const Event& event) {
  customers.apply(event);
  active.prefetch(event);  // its row is known now; the models between hide the miss
  catalog.apply(event);
  rejections.apply(event);
  gate.apply(event);
  throughput.apply(event);
  active.apply(event);
}

void ReadModels::apply(std::span<const Event> events) {
  // Two stages, so that neither waits on memory: the index slot of the
  // customer kSlotAhead events on, then (that slot loaded by now) the rows
  // of the customer kRowAhead on.
  constexpr size_t kSlotAhead = 16;
  constexpr size_t kRowAhead = 8;
  const size_t n = events.size();
  for (size_t k = 0; k < std::min(n, kSlotAhead); ++k) customers.prefetchSlot(events[k].customer());
  for (size_t k = 0; k < n; ++k) {
    if (k + kSlotAhead < n) customers.prefetchSlot(events[k + kSlotAhead].customer());
    if (k + kRowAhead < n)
      active.prefetchRow(customers.prefetchRow(events[k + kRowAhead].customer()));
    apply(events[k]);
  }
}

void ReadModels::reset() {
  customers.reset();
  catalog.reset();
  active.reset();
  rejections.reset();
  gate.reset();
  throughput.reset();
}

void ReadModels::expire() {
  active.expire();
  gate.expire();
}

}  // namespace shop::projections
