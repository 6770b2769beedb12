// Every read model the dashboard shows, fed together.
#pragma once

#include <chrono>
#include <span>

#include "projections/activity.h"
#include "projections/catalog.h"
#include "projections/customers.h"
#include "projections/rejections.h"

namespace shop::projections {

struct ReadModelsConfig {
  std::chrono::nanoseconds activeWindow = std::chrono::hours(24);
  std::chrono::nanoseconds gateWindow = std::chrono::minutes(5);
  Clock clock = systemNowNs;
};

// Owned by one thread; not thread-safe. Each model keeps its own lastSeq,
// so apply() is idempotent by seq for all of them together.
struct ReadModels {
  explicit ReadModels(const ReadModelsConfig& config = {});
  ReadModels(const ReadModels&) = delete;
  ReadModels& operator=(const ReadModels&) = delete;

  void apply(const Event& event);
  // The same as applying each in order, but faster on a big shop: while one
  // event is applied, the customer state of those a few places on is loaded
  // (at 1M customers most lookups miss the cache).
  void apply(std::span<const Event> events);
  void reset();
  // Ages the windowed models to the clock's now.
  void expire();
  Seq lastSeq() const { return customers.lastSeq(); }

  Clock clock;
  Customers customers;
  Catalog catalog;
  ActiveCustomers active;
  Rejections rejections;
  GatePressure gate;
  Throughput throughput;
};

}  // namespace shop::projections
