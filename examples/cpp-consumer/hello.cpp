// shop_hello [ENDPOINT]: asks a running shopd for its figures and prints
// its version and head seq. Exit 0 on an answer, 3 on none.
#include <cstdio>

#include "bus/client.h"

int main(int argc, char** argv) {
  const char* endpoint = argc > 1 ? argv[1] : "tcp://127.0.0.1:5555";
  zmq::context_t context;
  shop::bus::Client client(context, endpoint, {.timeoutMs = 1000, .retries = 0});
  shop::bus::CallResult result = client.call({shop::CommandId::random(), shop::GetStats{}});
  if (!result.ok() || !result.reply->reply.stats) {
    std::fprintf(stderr, "shop_hello: no answer from %s: %s\n", endpoint, result.error.c_str());
    return 3;
  }
  const shop::ShopStats& stats = *result.reply->reply.stats;
  std::printf("shopd %s, head seq %llu\n", stats.version.c_str(),
              static_cast<unsigned long long>(stats.headSeq));
  return 0;
}
