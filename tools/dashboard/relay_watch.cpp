#include "tools/dashboard/relay_watch.h"

#include <zmq.hpp>

#include <cinttypes>
#include <cstdio>
#include <memory>

#include "core/log.h"

namespace shop::dashboard {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// A status from a relay with 256 destinations is about 150 KiB.
constexpr int64_t kMaxAnswerBytes = 4 << 20;
constexpr auto kStopSlice = std::chrono::milliseconds(100);

constexpr const char* kCounters[] = {"checkpoint",  "lag",          "queued",  "inFlight",
                                     "delivered",   "attempts",     "retries", "parked",
                                     "parkedTotal", "parkFailures", "redriven"};
constexpr const char* kTexts[] = {"name", "kind", "url", "lastError"};

struct NotAStatus : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A Prometheus label value: backslash, quote and newline escaped.
std::string label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

int64_t unixNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

json readRelayStatus(const std::string& text) {
  json answer = json::parse(text, nullptr, false);
  if (answer.is_discarded()) throw NotAStatus("its answer is not JSON");
  if (!answer.is_object()) throw NotAStatus("its answer is not a JSON object");
  if (answer.contains("error") && answer["error"].is_string()) {
    throw NotAStatus("it answered: " + answer["error"].get<std::string>());
  }
  if (!answer.contains("destinations") || !answer["destinations"].is_array()) {
    throw NotAStatus("its answer has no destinations list");
  }
  json out = {{"serverId", std::string()}, {"head", uint64_t{0}}, {"destinations", json::array()}};
  if (answer.contains("serverId") && answer["serverId"].is_string()) {
    out["serverId"] = answer["serverId"];
  }
  if (answer.contains("head") && answer["head"].is_number_unsigned()) out["head"] = answer["head"];
  size_t i = 0;
  for (const auto& d : answer["destinations"]) {
    std::string where = "destinations[" + std::to_string(i++) + "]";
    if (!d.is_object()) throw NotAStatus(where + " is not an object");
    json kept = json::object();
    for (const char* field : kTexts) {
      if (!d.contains(field) || !d[field].is_string()) {
        throw NotAStatus(where + "." + field + " is missing or not text");
      }
      kept[field] = d[field];
    }
    for (const char* field : kCounters) {
      if (!d.contains(field) || !d[field].is_number_unsigned()) {
        throw NotAStatus(where + "." + field + " is missing or not a whole number");
      }
      kept[field] = d[field];
    }
    if (!d.contains("deliveredPerSecond") || !d["deliveredPerSecond"].is_number()) {
      throw NotAStatus(where + ".deliveredPerSecond is missing or not a number");
    }
    kept["deliveredPerSecond"] = d["deliveredPerSecond"];
    // A webhook's query often carries its secret: the page shows the rest.
    std::string url = kept["url"].get<std::string>();
    if (size_t q = url.find('?'); q != std::string::npos) kept["url"] = url.substr(0, q) + "?…";
    out["destinations"].push_back(std::move(kept));
  }
  return out;
}

RelayWatch::RelayWatch(RelayWatchConfig config) : config_(std::move(config)) {
  for (const auto& e : config_.endpoints) relays_.push_back({.endpoint = e});
}

RelayWatch::~RelayWatch() {
  stop();
}

void RelayWatch::start() {
  if (config_.endpoints.empty() || thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void RelayWatch::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    changed_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void RelayWatch::run() {
  zmq::context_t context(1);
  const size_t n = config_.endpoints.size();
  // A REQ socket that got no answer cannot ask again: it is replaced.
  std::vector<std::unique_ptr<zmq::socket_t>> sockets(n);
  const std::string request = R"({"status":{}})";
  auto stopping = [this] {
    std::lock_guard lock(mutex_);
    return stopping_;
  };
  for (;;) {
    auto roundStart = Clock::now();
    int64_t askedAtNs = unixNs();
    std::vector<std::string> errors(n);
    std::vector<json> answers(n);
    std::vector<bool> waiting(n, false);
    for (size_t i = 0; i < n; ++i) {
      try {
        if (!sockets[i]) {
          sockets[i] = std::make_unique<zmq::socket_t>(context, zmq::socket_type::req);
          sockets[i]->set(zmq::sockopt::linger, 0);
          sockets[i]->set(zmq::sockopt::maxmsgsize, kMaxAnswerBytes);
          sockets[i]->connect(config_.endpoints[i]);
        }
        waiting[i] = sockets[i]->send(zmq::buffer(request), zmq::send_flags::dontwait).has_value();
        if (!waiting[i]) errors[i] = "cannot ask it (its socket is full)";
      } catch (const zmq::error_t& e) {
        errors[i] = std::string("cannot ask it: ") + e.what();
        sockets[i].reset();
      }
    }
    auto deadline = roundStart + config_.timeout;
    for (;;) {
      std::vector<zmq::pollitem_t> items;
      std::vector<size_t> which;
      for (size_t i = 0; i < n; ++i) {
        if (!waiting[i]) continue;
        items.push_back({sockets[i]->handle(), 0, ZMQ_POLLIN, 0});
        which.push_back(i);
      }
      auto now = Clock::now();
      if (items.empty() || now >= deadline || stopping()) break;
      auto slice = std::min<Clock::duration>(deadline - now, kStopSlice);
      try {
        zmq::poll(items.data(), items.size(),
                  std::chrono::duration_cast<std::chrono::milliseconds>(slice) +
                      std::chrono::milliseconds(1));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        for (size_t i : which) {
          errors[i] = std::string("cannot wait for its answer: ") + e.what();
          waiting[i] = false;
          sockets[i].reset();
        }
        break;
      }
      for (size_t k = 0; k < items.size(); ++k) {
        if (!(items[k].revents & ZMQ_POLLIN)) continue;
        size_t i = which[k];
        waiting[i] = false;
        try {
          zmq::message_t answer;
          if (!sockets[i]->recv(answer, zmq::recv_flags::dontwait)) {
            waiting[i] = true;  // readable, yet nothing there: wait on
            continue;
          }
          if (sockets[i]->get(zmq::sockopt::rcvmore)) {
            throw NotAStatus("it answered in several frames");
          }
          answers[i] = readRelayStatus(answer.to_string());
        } catch (const NotAStatus& e) {
          errors[i] = std::string("not a relay's status: ") + e.what();
          sockets[i].reset();  // the rest of its frames with it
        } catch (const zmq::error_t& e) {
          errors[i] = std::string("cannot read its answer: ") + e.what();
          sockets[i].reset();
        }
      }
    }
    for (size_t i = 0; i < n; ++i) {
      if (!waiting[i]) continue;
      errors[i] = "no answer within " + std::to_string(config_.timeout.count()) + " ms";
      sockets[i].reset();
    }
    std::unique_lock lock(mutex_);
    if (stopping_) return;
    for (size_t i = 0; i < n; ++i) {
      Relay& r = relays_[i];
      bool wasUp = r.up;
      std::string wasError = r.error;
      r.askedAtNs = askedAtNs;
      r.up = errors[i].empty();
      r.error = errors[i];
      r.status = r.up ? std::move(answers[i]) : json();
      if (wasUp != r.up || (!r.up && wasError != r.error)) {
        if (r.up) {
          logLine("shop-dashboard", "relay %s answers", r.endpoint.c_str());
        } else {
          logLine("shop-dashboard", "relay %s: %s", r.endpoint.c_str(), r.error.c_str());
        }
      }
    }
    ++rounds_;
    changed_.notify_all();
    changed_.wait_until(lock, roundStart + config_.interval, [this] { return stopping_; });
    if (stopping_) return;
  }
}

json RelayWatch::snapshot() const {
  std::lock_guard lock(mutex_);
  json relays = json::array();
  for (const auto& r : relays_) {
    json one = {{"endpoint", r.endpoint},
                {"up", r.up},
                {"error", r.error},
                {"askedAtNs", r.askedAtNs},
                {"serverId", r.up ? r.status.at("serverId") : json("")},
                {"head", r.up ? r.status.at("head") : json(0)},
                {"destinations", r.up ? r.status.at("destinations") : json::array()}};
    relays.push_back(std::move(one));
  }
  return {{"relays", std::move(relays)}};
}

std::string RelayWatch::metricsText() const {
  std::lock_guard lock(mutex_);
  if (relays_.empty()) return "";
  std::string out;
  char line[128];
  auto header = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  header("shop_relay_up", "gauge", "1 when the relay answered its last status request");
  for (const auto& r : relays_) {
    out += "shop_relay_up{relay=\"" + label(r.endpoint) + "\"} " + (r.up ? "1" : "0") + "\n";
  }
  struct Series {
    const char* name;
    const char* type;
    const char* help;
    const char* field;
  };
  static constexpr Series kSeries[] = {
      {"shop_relay_lag_events", "gauge", "seqs read but not yet done with", "lag"},
      {"shop_relay_queued", "gauge", "messages waiting for a worker", "queued"},
      {"shop_relay_in_flight", "gauge", "messages being delivered", "inFlight"},
      {"shop_relay_delivered_total", "counter", "messages the destination took", "delivered"},
      {"shop_relay_delivered_per_second", "gauge", "deliveries a second over the last 10 s",
       "deliveredPerSecond"},
      {"shop_relay_attempts_total", "counter", "delivery attempts", "attempts"},
      {"shop_relay_retries_total", "counter", "attempts after a failed one", "retries"},
      {"shop_relay_parked", "gauge", "messages parked now", "parked"},
      {"shop_relay_parked_total", "counter", "messages ever parked", "parkedTotal"},
  };
  for (const auto& s : kSeries) {
    header(s.name, s.type, s.help);
    for (const auto& r : relays_) {
      if (!r.up) continue;
      for (const auto& d : r.status.at("destinations")) {
        std::snprintf(line, sizeof line, "%.17g", d.at(s.field).get<double>());
        out += std::string(s.name) + "{relay=\"" + label(r.endpoint) + "\",destination=\"" +
               label(d.at("name").get<std::string>()) + "\"} " + line + "\n";
      }
    }
  }
  return out;
}

bool RelayWatch::waitForRounds(uint64_t more, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  uint64_t until = rounds_ + more;
  return changed_.wait_for(lock, timeout, [&] { return rounds_ >= until; });
}

}  // namespace shop::dashboard
