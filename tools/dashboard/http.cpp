#include "tools/dashboard/http.h"

#include <httplib.h>

#include <charconv>
#include <chrono>

#include "core/log.h"
#include "tools/dashboard/relay_watch.h"
#include "tools/dashboard/views.h"

namespace shop::dashboard {
namespace {

using projections::CustomerOrder;
using projections::CustomerQuery;
using projections::Health;
using projections::ReadModels;

constexpr size_t kMaxLimit = 500;
constexpr size_t kMaxPrefixBytes = 256;

struct BadRequest : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void sendJson(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body, "application/json; charset=utf-8");
}

void sendError(httplib::Response& res, int status, const std::string& message) {
  sendJson(res, status, dump(json{{"error", message}}));
}

size_t sizeParam(const httplib::Request& req, const char* name, size_t fallback, size_t min,
                 size_t max) {
  if (!req.has_param(name)) return fallback;
  std::string text = req.get_param_value(name);
  size_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value < min ||
      value > max) {
    throw BadRequest(std::string(name) + " must be a whole number from " + std::to_string(min) +
                     " to " + std::to_string(max));
  }
  return value;
}

// Only the parameters a route knows: a typo is an error, not a default.
void onlyParams(const httplib::Request& req, std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : req.params) {
    bool ok = false;
    for (auto k : known) ok = ok || key == k;
    if (!ok) throw BadRequest("unknown parameter '" + key + "'");
  }
}

bool validUtf8(std::string_view s) {
  try {
    (void)json(std::string(s)).dump();
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

}  // namespace

HttpFront::HttpFront(projections::ProjectionRunner& runner, HttpConfig config,
                     const RelayWatch* relays)
    : runner_(runner),
      config_(std::move(config)),
      relays_(relays),
      server_(std::make_unique<httplib::Server>()) {
  // Each open /events stream holds a worker; the default pool (8) would let
  // a few tabs starve the API.
  int workers = config_.maxStreams + 16;
  server_->new_task_queue = [workers] {
    return new httplib::ThreadPool(static_cast<size_t>(workers));
  };
  server_->set_keep_alive_timeout(2);
  routes();
}

HttpFront::~HttpFront() {
  stop();
}

int HttpFront::bind() {
  int port = config_.port == 0
                 ? server_->bind_to_any_port(config_.host)
                 : (server_->bind_to_port(config_.host, config_.port) ? config_.port : -1);
  if (port < 0) {
    throw std::runtime_error("cannot serve HTTP on " + config_.host + ":" +
                             std::to_string(config_.port) + ": " + std::strerror(errno));
  }
  return port;
}

void HttpFront::serve() {
  server_->listen_after_bind();
}

void HttpFront::stop() {
  stopping_.store(true, std::memory_order_release);
  server_->stop();
}

void HttpFront::routes() {
  auto& s = *server_;
  // Runs fn(models, health) on the runner thread and answers with what it returns.
  auto answer = [this](httplib::Response& res,
                       std::function<std::pair<int, std::string>(ReadModels&, const Health&)> fn) {
    auto future = runner_.query(std::move(fn));
    if (future.wait_for(std::chrono::milliseconds(config_.queryTimeoutMs)) !=
        std::future_status::ready) {
      sendError(res, 503, "the read models are busy (rebuilding?); try again");
      return;
    }
    try {
      auto [status, body] = future.get();
      sendJson(res, status, body);
    } catch (const std::future_error&) {
      sendError(res, 503, "the dashboard is stopping");
    }
  };
  // Parameter errors become 400 with their message.
  auto guarded = [](auto handler) {
    return [handler](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const BadRequest& e) {
        sendError(res, 400, e.what());
      }
    };
  };

  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    // Defence in depth: the page renders every value as text, and no
    // script or style may come from anywhere but the page itself.
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_content(kPageHtml, "text/html; charset=utf-8");
  });

  s.Get("/api/health", guarded([answer](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {});
          answer(res, [](ReadModels&, const Health& h) {
            return std::pair{200, dump(healthJson(h))};
          });
        }));

  s.Get("/api/customers", guarded([answer](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {"prefix", "offset", "limit", "sort", "order"});
          auto query = std::make_shared<CustomerQuery>();
          auto prefix = std::make_shared<std::string>(req.get_param_value("prefix"));
          if (prefix->size() > kMaxPrefixBytes) {
            throw BadRequest("prefix is longer than " + std::to_string(kMaxPrefixBytes) + " bytes");
          }
          if (!validUtf8(*prefix)) throw BadRequest("prefix is not valid UTF-8");
          query->prefix = *prefix;
          query->offset = sizeParam(req, "offset", 0, 0, 1'000'000'000);
          query->limit = sizeParam(req, "limit", 50, 1, kMaxLimit);
          std::string sort = req.has_param("sort") ? req.get_param_value("sort") : "id";
          if (sort == "id") {
            query->order = CustomerOrder::id;
          } else if (sort == "balance") {
            query->order = CustomerOrder::balance;
          } else if (sort == "activity") {
            query->order = CustomerOrder::activity;
          } else {
            throw BadRequest("sort must be id, balance or activity");
          }
          std::string order = req.has_param("order") ? req.get_param_value("order") : "asc";
          if (order != "asc" && order != "desc") throw BadRequest("order must be asc or desc");
          query->descending = order == "desc";
          answer(res, [query, prefix](ReadModels& m, const Health&) {
            auto page = m.customers.page(*query);
            return std::pair{200, dump(customerPageJson(page, *query))};
          });
        }));

  s.Get(R"(/api/customers/(.+))",
        guarded([answer](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {});
          std::string id = req.matches[1];
          answer(res, [id](ReadModels& m, const Health&) {
            const auto* row = m.customers.find(id);
            if (!row) return std::pair{404, dump(json{{"error", "no customer '" + id + "'"}})};
            return std::pair{200, dump(customerJson(*row))};
          });
        }));

  s.Get("/api/products", guarded([answer](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {});
          answer(res, [](ReadModels& m, const Health&) {
            return std::pair{200, dump(productsJson(m.catalog))};
          });
        }));

  s.Get("/api/rejections", guarded([answer](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {});
          answer(res, [](ReadModels& m, const Health&) {
            return std::pair{200, dump(rejectionsJson(m.rejections))};
          });
        }));

  s.Get("/api/gate", guarded([answer](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {"limit"});
          size_t limit = sizeParam(req, "limit", 20, 1, kMaxLimit);
          answer(res, [limit](ReadModels& m, const Health&) {
            return std::pair{200, dump(gateJson(m.gate, limit))};
          });
        }));

  s.Get("/api/active", guarded([answer](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {"limit"});
          size_t limit = sizeParam(req, "limit", 50, 0, kMaxLimit);
          answer(res, [limit](ReadModels& m, const Health&) {
            return std::pair{200, dump(activeJson(m.active, limit))};
          });
        }));

  s.Get("/api/throughput", guarded([answer](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {});
          answer(res, [](ReadModels& m, const Health&) {
            return std::pair{200,
                             dump(throughputJson(m.throughput, projections::Throughput::kSeconds))};
          });
        }));

  s.Get("/api/relay", guarded([this](const httplib::Request& req, httplib::Response& res) {
          onlyParams(req, {});
          sendJson(res, 200, dump(relays_ ? relays_->snapshot() : json{{"relays", json::array()}}));
        }));

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    auto future =
        runner_.query([](ReadModels& m, const Health& h) { return dashboard::metricsText(m, h); });
    if (future.wait_for(std::chrono::milliseconds(config_.queryTimeoutMs)) !=
        std::future_status::ready) {
      res.status = 503;
      res.set_content("the read models are busy\n", "text/plain");
      return;
    }
    std::string text = future.get();
    if (relays_) text += relays_->metricsText();
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });

  s.Get("/events", [this](const httplib::Request&, httplib::Response& res) {
    if (streams_.fetch_add(1) >= config_.maxStreams) {
      streams_.fetch_sub(1);
      sendError(res, 503, "too many open event streams");
      return;
    }
    res.set_header("Cache-Control", "no-store");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, version = uint64_t{0}, quietMs = 0](size_t, httplib::DataSink& sink) mutable {
          // Waits in short slices so that a stop ends the stream quickly;
          // a comment line every 15 s keeps proxies from closing it.
          while (!stopping_.load(std::memory_order_acquire)) {
            auto summary = runner_.waitSummary(version, std::chrono::milliseconds(250));
            if (summary.version > version && summary.text) {
              version = summary.version;
              std::string message = "event: summary\ndata: " + *summary.text + "\n\n";
              return sink.write(message.data(), message.size());
            }
            quietMs += 250;
            if (quietMs >= 15'000) {
              quietMs = 0;
              static constexpr char kKeepAlive[] = ": keep-alive\n\n";
              return sink.write(kKeepAlive, sizeof kKeepAlive - 1);
            }
          }
          sink.done();
          return true;
        },
        [this](bool) { streams_.fetch_sub(1); });
  });

  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      sendError(res, 404, "no route " + req.method + " " + req.path);
    } else {
      sendError(res, res.status, "HTTP error " + std::to_string(res.status));
    }
  });
  s.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        logLine("shop-dashboard", "%s %s failed: %s", req.method.c_str(), req.path.c_str(),
                what.c_str());
        sendError(res, 500, "internal error");
      });
}

}  // namespace shop::dashboard
