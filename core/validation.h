// Complete validation of a command's fields, done on the ingress thread before
// any state is touched (LMAX: validate fully, then change; there is no rollback).
#pragma once

#include <optional>
#include <string_view>

#include "core/domain.h"

namespace shop {

inline constexpr size_t kMaxIdBytes = 64;

// An id is 1-64 bytes of valid UTF-8 with no control character and no '/'.
// Returns why it is not, or nullopt when it is.
std::optional<std::string> checkId(std::string_view id);

// The form of an id that events, topics and logs may carry. A valid id is
// itself. An invalid one is never echoed raw: of its first kMaxIdBytes
// bytes, every control character, '/' and byte that is not valid UTF-8
// becomes U+FFFD, and a longer id is cut there and marked with
// "…(N bytes)". The result is valid UTF-8 of at most 3 * kMaxIdBytes + 24
// bytes, whatever the client sent.
std::string displayId(std::string_view id);

// The same treatment for free text that may hold a client's bytes (a
// parser's message quoting them): of its first `maxBytes` bytes, every
// control character and byte that is not valid UTF-8 becomes U+FFFD, and a
// longer text is cut there and marked "…(N bytes)".
std::string displayText(std::string_view text, size_t maxBytes);

// Field-level checks that need no aggregate state: id syntax, ranges of
// amounts and quantities. Returns the rejection, or nullopt when valid.
std::optional<Rejection> validate(const Command& command);

}  // namespace shop
