// The read models as JSON (for the HTTP API and the page's live summary)
// and as Prometheus text. Run on the projection runner's thread: they read
// live models.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "projections/read_models.h"
#include "projections/runner.h"

namespace shop::dashboard {

using nlohmann::json;

// Every response goes through this: an encoder, and bytes that are not
// UTF-8 come out as U+FFFD, so no response is ever invalid JSON.
std::string dump(const json& value);

json customerJson(const projections::CustomerRow& row);
json customerPageJson(const projections::CustomerPage& page, const projections::CustomerQuery& q);
json productsJson(const projections::Catalog& catalog);
json rejectionsJson(const projections::Rejections& rejections);
json gateJson(const projections::GatePressure& gate, size_t limit);
json activeJson(const projections::ActiveCustomers& active, size_t limit);
json throughputJson(const projections::Throughput& throughput, size_t seconds);
json healthJson(const projections::Health& health);

// What the page's live stream carries, at most 10 times a second: all but
// the customers table, which it pages through the API.
std::string summaryJson(projections::ReadModels& models, const projections::Health& health);

std::string metricsText(projections::ReadModels& models, const projections::Health& health);

}  // namespace shop::dashboard
