#include "tests/testkit/embedded_server.h"

#include "tests/testkit/test_log.h"

namespace shop::testkit {

bus::ServerConfig EmbeddedServer::defaultConfig() {
  bus::ServerConfig config;
  config.commandsEndpoint = "tcp://127.0.0.1:*";
  config.eventsEndpoint = "tcp://127.0.0.1:*";
  config.lingerMs = 200;
  return config;
}

EngineConfig EmbeddedServer::defaultEngineConfig() {
  EngineConfig config;
  config.shards = 2;
  return config;
}

EmbeddedServer::EmbeddedServer(bus::ServerConfig config, EngineConfig engineConfig,
                               std::optional<bus::AccessConfig> access)
    : context_(1) {
  TestLog::install();  // quiet: the server's log lines are kept, not printed
  if (access) {
    access_ = std::make_unique<bus::AccessControl>(context_, std::move(*access));
    config.access = access_.get();
  }
  std::promise<bus::Server*> ready;
  auto started = ready.get_future();
  std::shared_future<void> released = release_.get_future().share();
  thread_ = std::thread([this, config, engineConfig, &ready, released] {
    // Wired as shopd's main() does, on the thread that runs them.
    std::unique_ptr<bus::Server> server;
    std::unique_ptr<Engine> engine;
    try {
      server = std::make_unique<bus::Server>(context_, config);
      engine = std::make_unique<Engine>(engineConfig, *server, *server);
    } catch (...) {
      finished_.set_value();
      ready.set_exception(std::current_exception());
      return;
    }
    ready.set_value(server.get());
    try {
      server->run(*engine);
    } catch (const std::exception& e) {
      runError_ = e.what();
    }
    finalStats_ = server->stats();
    // The server may be stopping because requestStop() ran on the test
    // thread, which may still be inside it: destroy it only once released.
    finished_.set_value();
    released.wait();
  });
  try {
    server_ = started.get();
  } catch (...) {
    release_.set_value();
    thread_.join();
    throw;
  }
  commands_ = server_->commandsEndpoint();
  events_ = server_->eventsEndpoint();
  eventsJson_ = server_->eventsJsonEndpoint();
}

EmbeddedServer::~EmbeddedServer() {
  stop();
}

void EmbeddedServer::stop() {
  if (!thread_.joinable()) return;
  server_->requestStop();
  release_.set_value();
  thread_.join();
  server_ = nullptr;
}

std::string EmbeddedServer::waitStopped() {
  if (thread_.joinable()) {
    finished_.get_future().wait();
    release_.set_value();
    thread_.join();
  }
  server_ = nullptr;
  return runError_;
}

bus::ServerStats EmbeddedServer::stats() {
  return withEngine([server = server_](Engine&) { return server->stats(); });
}

unsigned EmbeddedServer::holdShardOfCustomer(const std::string& customer) {
  return withEngine([customer](Engine& engine) {
    unsigned shard = engine.shardOfCustomer(customer);
    engine.holdShard(shard);
    return shard;
  });
}

void EmbeddedServer::resumeShard(unsigned shard) {
  withEngine([shard](Engine& engine) { engine.resumeShard(shard); });
}

}  // namespace shop::testkit
