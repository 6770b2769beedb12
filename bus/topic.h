// Topics on the PUB socket.
//   c/<customer>/<eventName>   events about a customer (incl. its rejections)
//   p/<product>/<eventName>    events about a product only
//   s/<eventName>              anything else: a rejected ReadEvents, and every
//                              rejection of an invalid id (invalidId)
// Ids never contain '/', so the prefix "c/<customer>/" selects exactly one
// customer's events, and "" selects everything.
#pragma once

#include <string>

#include "core/domain.h"

namespace shop::bus {

std::string topicOf(const Event& event);
// The same, written into `out` (replacing its contents) so that a caller can
// reuse one buffer instead of allocating per event.
void topicInto(const Event& event, std::string& out);
// The prefix that selects exactly one customer's events.
std::string customerTopicPrefix(std::string_view customer);

}  // namespace shop::bus
