#include "bus/topic.h"

namespace shop::bus {

void topicInto(const Event& event, std::string& out) {
  std::string_view kind = eventName(event.body);
  out.clear();
  // A topic is built only from validated ids: a rejection of an invalid id
  // goes to s/, so that no client-chosen bytes can reach another's prefix.
  if (const auto* r = std::get_if<OperationRejected>(&event.body);
      r && r->reason == RejectReason::invalidId) {
    out.append("s/").append(kind);
    return;
  }
  if (auto c = event.customer(); !c.empty()) {
    out.append("c/").append(c).append("/").append(kind);
  } else if (auto p = event.product(); !p.empty()) {
    out.append("p/").append(p).append("/").append(kind);
  } else {
    out.append("s/").append(kind);
  }
}

std::string topicOf(const Event& event) {
  std::string topic;
  topicInto(event, topic);
  return topic;
}

std::string customerTopicPrefix(std::string_view customer) {
  return "c/" + std::string(customer) + "/";
}

}  // namespace shop::bus
