#include "projections/read_models.h"

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
