#include "bus/topic.h"

namespace shop::bus {

std::string topicOf(const Event& event) {
  std::string_view kind = eventName(event.body);
  std::string topic;
  if (auto c = event.customer(); !c.empty()) {
    topic.reserve(c.size() + kind.size() + 3);
    topic.append("c/").append(c).append("/").append(kind);
  } else if (auto p = event.product(); !p.empty()) {
    topic.reserve(p.size() + kind.size() + 3);
    topic.append("p/").append(p).append("/").append(kind);
  } else {
    topic.append("s/").append(kind);
  }
  return topic;
}

std::string customerTopicPrefix(std::string_view customer) {
  return "c/" + std::string(customer) + "/";
}

}  // namespace shop::bus
