#include "relay/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/domain.h"

namespace shop::relay {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw ConfigError(path + ": " + why);
}

// Reads an object's fields, naming each by its path, and refuses fields it
// does not know (a typo must not be taken for a missing optional field).
class Fields {
 public:
  Fields(const json& object, std::string path) : object_(object), path_(std::move(path)) {
    if (!object_.is_object()) fail(path_.empty() ? "the config" : path_, "must be an object");
  }
  ~Fields() = default;

  std::string at(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const json* find(const std::string& key) {
    known_.push_back(key);
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }
  std::string text(const std::string& key, std::string fallback, bool required = false) {
    const json* v = find(key);
    if (!v) {
      if (required) fail(at(key), "is missing");
      return fallback;
    }
    if (!v->is_string()) fail(at(key), "must be a string");
    return v->get<std::string>();
  }
  int64_t integer(const std::string& key, int64_t fallback, int64_t min, int64_t max) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number_integer()) fail(at(key), "must be a whole number");
    int64_t n = v->get<int64_t>();
    if (n < min || n > max) {
      fail(at(key), "must be from " + std::to_string(min) + " to " + std::to_string(max) +
                        ", got " + std::to_string(n));
    }
    return n;
  }
  double number(const std::string& key, double fallback, double min, double max) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(at(key), "must be a number");
    double n = v->get<double>();
    if (!std::isfinite(n) || n < min || n > max) {
      std::ostringstream range;
      range << "must be from " << min << " to " << max << ", got " << v->dump();
      fail(at(key), range.str());
    }
    return n;
  }
  // Call once every field was read: an unknown one is an error.
  void done() const {
    for (const auto& [key, value] : object_.items()) {
      if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
        fail(at(key), "is not a field here (known: " + list() + ")");
      }
    }
  }

 private:
  std::string list() const {
    std::string out;
    for (const auto& k : known_) out += (out.empty() ? "" : ", ") + k;
    return out;
  }
  const json& object_;
  std::string path_;
  std::vector<std::string> known_;
};

bool noSpace(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](unsigned char c) { return c <= ' ' || c == 0x7F; });
}

bool allOf(std::string_view s, std::string_view allowed) {
  return !s.empty() && s.find_first_not_of(allowed) == std::string_view::npos;
}

constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kHostChars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-";

void checkEndpoint(const std::string& path, const std::string& endpoint) {
  std::string_view e = endpoint;
  bool ok = false;
  for (std::string_view scheme : {"tcp://", "ipc://", "inproc://"}) {
    if (e.starts_with(scheme) && e.size() > scheme.size() && noSpace(e)) ok = true;
  }
  if (!ok) fail(path, "'" + endpoint + "' is not a ZeroMQ endpoint like tcp://127.0.0.1:7000");
}

void checkHttpUrl(const std::string& path, const std::string& url) {
  // http://host[:port][/path]
  std::string_view u = url;
  bool ok = u.starts_with("http://") && noSpace(u);
  if (ok) {
    u.remove_prefix(7);
    std::string_view authority = u.substr(0, u.find('/'));
    std::string_view host = authority.substr(0, authority.find(':'));
    ok = allOf(host, kHostChars);
    if (ok && host.size() < authority.size()) {
      std::string_view port = authority.substr(host.size() + 1);
      ok = allOf(port, kDigits) && port.size() <= 5 && std::stoi(std::string(port)) <= 65535;
    }
  }
  if (!ok) fail(path, "'" + url + "' is not a URL like http://host:8080/path (http only)");
}

RetryPolicy parseRetry(const json& object, const std::string& path) {
  Fields f(object, path);
  RetryPolicy r;
  r.initialMs = f.integer("initialMs", r.initialMs, 1, 3'600'000);
  r.multiplier = f.number("multiplier", r.multiplier, 1.0, 100.0);
  r.maxMs = f.integer("maxMs", r.maxMs, 1, 86'400'000);
  r.jitter = f.number("jitter", r.jitter, 0.0, 1.0);
  r.maxAttempts = static_cast<uint32_t>(f.integer("maxAttempts", r.maxAttempts, 1, 1'000'000));
  f.done();
  if (r.maxMs < r.initialMs) fail(path + ".maxMs", "must be >= initialMs");
  return r;
}

Destination parseDestination(const json& object, const std::string& path) {
  Fields f(object, path);
  Destination d;
  d.name = f.text("name", "", true);
  if (d.name.size() > 64 ||
      !allOf(d.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")) {
    fail(f.at("name"), "'" + d.name + "' must be 1-64 of A-Z a-z 0-9 _ -");
  }
  std::string kind = f.text("kind", "http");
  if (kind == "http") {
    d.kind = Destination::Kind::http;
  } else if (kind == "zmq") {
    d.kind = Destination::Kind::zmq;
  } else {
    fail(f.at("kind"), "'" + kind + "' is not http or zmq");
  }
  d.url = f.text("url", "", true);
  if (d.kind == Destination::Kind::http) {
    checkHttpUrl(f.at("url"), d.url);
  } else {
    checkEndpoint(f.at("url"), d.url);
  }
  const json* events = f.find("events");
  if (!events) fail(f.at("events"), "is missing (a list of event kinds)");
  if (!events->is_array() || events->empty()) {
    fail(f.at("events"), "must be a non-empty list of event kinds");
  }
  for (size_t i = 0; i < events->size(); ++i) {
    std::string at = f.at("events") + "[" + std::to_string(i) + "]";
    if (!(*events)[i].is_string()) fail(at, "must be a string");
    std::string name = (*events)[i].get<std::string>();
    const auto& kinds = eventKinds();
    if (std::find(kinds.begin(), kinds.end(), name) == kinds.end()) {
      std::string all;
      for (const auto& k : kinds) all += (all.empty() ? "" : ", ") + k;
      fail(at, "'" + name + "' is not an event kind (" + all + ")");
    }
    d.events.push_back(std::move(name));
  }
  d.customerPrefix = f.text("customerPrefix", "");
  d.productPrefix = f.text("productPrefix", "");
  d.maxInFlight = static_cast<uint32_t>(f.integer("maxInFlight", d.maxInFlight, 1, 256));
  d.ratePerSecond = f.number("ratePerSecond", d.ratePerSecond, 0, 1e6);
  d.timeoutMs = f.integer("timeoutMs", d.timeoutMs, 1, 600'000);
  if (const json* retry = f.find("retry")) d.retry = parseRetry(*retry, f.at("retry"));
  f.done();
  return d;
}

}  // namespace

double RetryPolicy::baseDelayMs(uint32_t attempt) const {
  double delay = static_cast<double>(initialMs);
  for (uint32_t k = 1; k < attempt && delay < static_cast<double>(maxMs); ++k) delay *= multiplier;
  return std::min(delay, static_cast<double>(maxMs));
}

const std::vector<std::string>& eventKinds() {
  static const std::vector<std::string> kinds = [] {
    std::vector<std::string> out;
    for (size_t k = 0; k < std::variant_size_v<EventBody>; ++k) {
      EventBody body;
      // One of each alternative, by index, for its name.
      [&]<size_t... I>(std::index_sequence<I...>) {
        ((k == I ? void(body.emplace<I>()) : void()), ...);
      }
      (std::make_index_sequence<std::variant_size_v<EventBody>>{});
      out.emplace_back(eventName(body));
    }
    return out;
  }();
  return kinds;
}

Config parseConfig(const std::string& text) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ConfigError(std::string("not JSON: ") + e.what());
  }
  Fields f(root, "");
  Config c;
  c.commands = f.text("commands", c.commands);
  checkEndpoint("commands", c.commands);
  c.events = f.text("events", c.events);
  checkEndpoint("events", c.events);
  c.control = f.text("control", c.control);
  checkEndpoint("control", c.control);
  c.stateDir = f.text("stateDir", c.stateDir);
  if (c.stateDir.empty()) fail("stateDir", "must not be empty");
  c.curveServerKey = f.text("curveServerKey", "");
  c.curveClientKey = f.text("curveClientKey", "");
  if (c.curveServerKey.empty() != c.curveClientKey.empty()) {
    fail(c.curveServerKey.empty() ? "curveServerKey" : "curveClientKey",
         "is missing: CURVE takes both curveServerKey and curveClientKey");
  }
  if (!c.curveServerKey.empty()) {
    try {
      c.curve = bus::ClientCurve::fromFiles(c.curveServerKey, c.curveClientKey);
    } catch (const std::exception& e) {
      fail("curveServerKey, curveClientKey", e.what());
    }
  }
  const json* destinations = f.find("destinations");
  if (!destinations) fail("destinations", "is missing (a list of destinations)");
  if (!destinations->is_array() || destinations->empty()) {
    fail("destinations", "must be a non-empty list");
  }
  for (size_t i = 0; i < destinations->size(); ++i) {
    std::string path = "destinations[" + std::to_string(i) + "]";
    Destination d = parseDestination((*destinations)[i], path);
    for (const auto& other : c.destinations) {
      if (other.name == d.name) fail(path + ".name", "'" + d.name + "' is used twice");
    }
    c.destinations.push_back(std::move(d));
  }
  f.done();
  return c;
}

Config readConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parseConfig(text.str());
  } catch (const ConfigError& e) {
    throw ConfigError(path + ": " + e.what());
  }
}

}  // namespace shop::relay
