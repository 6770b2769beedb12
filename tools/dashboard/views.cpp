#include "tools/dashboard/views.h"

#include <cinttypes>
#include <cstdio>

namespace shop::dashboard {

using namespace shop::projections;

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json customerJson(const CustomerRow& row) {
  json holdings = json::array();
  for (const auto& h : row.holdings) {
    holdings.push_back({{"product", h.product}, {"quantity", h.quantity}, {"paid", h.paid}});
  }
  return {{"id", row.id},
          {"balance", row.balance},
          {"accepted", row.accepted},
          {"rejected", row.rejected},
          {"liveHolds", row.liveHolds},
          {"lastActivityNs", row.lastActivityNs},
          {"holdings", std::move(holdings)}};
}

json customerPageJson(const CustomerPage& page, const CustomerQuery& q) {
  json rows = json::array();
  for (const auto* row : page.rows) rows.push_back(customerJson(*row));
  return {{"total", page.total},
          {"offset", q.offset},
          {"limit", q.limit},
          {"customers", std::move(rows)}};
}

json productsJson(const Catalog& catalog) {
  json products = json::array();
  for (const auto* p : catalog.sorted()) {
    products.push_back({{"id", p->id},
                        {"price", p->price},
                        {"stock", p->stock},
                        {"held", p->held},
                        {"sold", p->sold},
                        {"returned", p->returned},
                        {"revenue", p->revenue},
                        {"refunded", p->refunded},
                        {"netRevenue", p->netRevenue()}});
  }
  json top = json::array();
  for (const auto* p : catalog.topSellers(10)) {
    top.push_back({{"id", p->id}, {"netSold", p->netSold()}, {"netRevenue", p->netRevenue()}});
  }
  return {{"products", std::move(products)}, {"topSellers", std::move(top)}};
}

namespace {

template <typename Enum>
json countsByName(size_t ordinals, const std::function<uint64_t(Enum)>& count) {
  json out = json::object();
  for (size_t k = 0; k < ordinals; ++k) {
    auto e = static_cast<Enum>(k);
    uint64_t n = count(e);
    if (n != 0) out[std::string(name(e))] = n;
  }
  return out;
}

// The ordinals this build knows: one past the last enumerator.
constexpr size_t kReasonCount = static_cast<size_t>(RejectReason::invalidTtl) + 1;
constexpr size_t kCommandCount = static_cast<size_t>(CommandKind::releaseHold) + 1;

}  // namespace

json rejectionsJson(const Rejections& rejections) {
  json recent = json::array();
  auto kept = rejections.recent();
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) {
    const OperationRejected& r = (*it)->rejection;
    recent.push_back({{"seq", (*it)->seq},
                      {"timestampNs", (*it)->timestampNs},
                      {"reason", name(r.reason)},
                      {"command", name(r.command)},
                      {"customer", r.customer},
                      {"product", r.product},
                      {"detail", r.detail}});
  }
  return {{"total", rejections.total()},
          {"byReason", countsByName<RejectReason>(
                           kReasonCount, [&](RejectReason r) { return rejections.byReason(r); })},
          {"byCommand", countsByName<CommandKind>(
                            kCommandCount, [&](CommandKind k) { return rejections.byCommand(k); })},
          {"recent", std::move(recent)}};
}

json gateJson(const GatePressure& gate, size_t limit) {
  json hottest = json::array();
  for (const auto& e : gate.hottest(limit)) {
    hottest.push_back({{"id", e.id}, {"rejections", e.rejections}});
  }
  return {
      {"windowSeconds", std::chrono::duration_cast<std::chrono::seconds>(gate.window()).count()},
      {"total", gate.total()},
      {"hottest", std::move(hottest)}};
}

json activeJson(const ActiveCustomers& active, size_t limit) {
  json customers = json::array();
  for (const auto& e : active.recent(limit)) {
    customers.push_back({{"id", e.id}, {"lastActivityNs", e.lastActivityNs}});
  }
  return {
      {"windowSeconds", std::chrono::duration_cast<std::chrono::seconds>(active.window()).count()},
      {"count", active.count()},
      {"customers", std::move(customers)}};
}

json throughputJson(const Throughput& throughput, size_t seconds) {
  auto all = throughput.lastSeconds();
  size_t from = all.size() > seconds ? all.size() - seconds : 0;
  json out = json::array();
  for (size_t k = from; k < all.size(); ++k) {
    out.push_back(
        {{"t", all[k].unixSecond}, {"events", all[k].events}, {"rejections", all[k].rejections}});
  }
  return {{"seconds", std::move(out)}};
}

json healthJson(const Health& health) {
  char serverId[17];
  std::snprintf(serverId, sizeof serverId, "%016" PRIx64, health.serverId);
  json truncated = nullptr;
  if (health.truncated) {
    truncated = {{"firstLost", health.truncated->first}, {"oldest", health.truncated->second}};
  }
  return {{"version", SHOP_VERSION},
          {"serverId", health.serverId ? json(serverId) : json(nullptr)},
          {"connected", health.connected},
          {"headSeq", health.headSeq},
          {"appliedSeq", health.appliedSeq},
          {"lag", health.lag()},
          {"builtFromSeq", health.builtFromSeq},
          {"gapsRepaired", health.gapsRepaired},
          {"framesSkipped", health.framesSkipped},
          {"resets", health.resets},
          {"disconnects", health.disconnects},
          {"truncated", std::move(truncated)},
          {"lastError", health.lastError}};
}

std::string summaryJson(ReadModels& models, const Health& health) {
  json products = productsJson(models.catalog);
  json active = activeJson(models.active, 0);
  active.erase("customers");
  return dump({{"health", healthJson(health)},
               {"customers", models.customers.size()},
               {"products", std::move(products["products"])},
               {"topSellers", std::move(products["topSellers"])},
               {"rejections", rejectionsJson(models.rejections)},
               {"gate", gateJson(models.gate, 20)},
               {"active", std::move(active)},
               {"throughput", throughputJson(models.throughput, 60)}});
}

std::string metricsText(ReadModels& models, const Health& health) {
  std::string out;
  char line[256];
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name,
                  type, name, value);
    out += line;
  };
  auto d = [](auto v) { return static_cast<double>(v); };
  metric("shop_projection_connected", "gauge", "1 when shopd answered the last head check",
         health.connected ? 1 : 0);
  metric("shop_projection_head_seq", "gauge", "newest seq shopd reported", d(health.headSeq));
  metric("shop_projection_applied_seq", "gauge", "newest seq applied to the read models",
         d(health.appliedSeq));
  metric("shop_projection_lag_events", "gauge", "head seq minus applied seq", d(health.lag()));
  metric("shop_projection_gaps_repaired_total", "counter",
         "gaps in the live stream read back from shopd", d(health.gapsRepaired));
  metric("shop_projection_frames_skipped_total", "counter", "events that could not be decoded",
         d(health.framesSkipped));
  metric("shop_projection_resets_total", "counter",
         "times the models were rebuilt (server restart or truncation)", d(health.resets));
  metric("shop_customers", "gauge", "customers in the read model", d(models.customers.size()));
  metric("shop_products", "gauge", "products in the read model", d(models.catalog.size()));
  metric("shop_active_customers", "gauge", "customers active inside the window",
         d(models.active.count()));
  metric("shop_events_total", "counter", "events applied", d(models.throughput.events()));
  out += "# HELP shop_rejections_total rejections applied, by reason\n";
  out += "# TYPE shop_rejections_total counter\n";
  for (size_t k = 0; k < kReasonCount; ++k) {
    auto reason = static_cast<RejectReason>(k);
    std::snprintf(line, sizeof line, "shop_rejections_total{reason=\"%s\"} %" PRIu64 "\n",
                  std::string(name(reason)).c_str(), models.rejections.byReason(reason));
    out += line;
  }
  metric("shop_gate_rejections_window", "gauge", "tooManyPending rejections inside the gate window",
         d(models.gate.total()));
  return out;
}

}  // namespace shop::dashboard
