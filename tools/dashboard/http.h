// The dashboard's HTTP side: the page, the JSON API, the live stream and
// the metrics, all answered from a ProjectionRunner.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "projections/runner.h"

namespace httplib {
class Server;
}

namespace shop::dashboard {

class RelayWatch;

struct HttpConfig {
  std::string host = "127.0.0.1";
  int port = 8080;            // 0: any free port (see bind())
  int maxStreams = 32;        // open /events streams; past it, 503
  int queryTimeoutMs = 2000;  // a query the runner does not answer in time gets 503
};

// Handlers run on the HTTP library's worker threads; they reach the models
// only through runner.query() and runner.waitSummary().
class HttpFront {
 public:
  // `relays`, when given, answers GET /api/relay and adds to /metrics; it
  // must outlive the front.
  HttpFront(projections::ProjectionRunner& runner, HttpConfig config,
            const RelayWatch* relays = nullptr);
  ~HttpFront();
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  // Binds; returns the port. Throws std::runtime_error naming the address.
  int bind();
  // Serves until stop(). Blocks.
  void serve();
  // Thread-safe; ends open streams within a quarter second.
  void stop();

 private:
  void routes();

  projections::ProjectionRunner& runner_;
  HttpConfig config_;
  const RelayWatch* relays_;
  std::unique_ptr<httplib::Server> server_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> streams_{0};
};

// The page, embedded at build time (tools/dashboard/page/index.html).
extern const char* const kPageHtml;

}  // namespace shop::dashboard
