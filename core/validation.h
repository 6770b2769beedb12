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

// Field-level checks that need no aggregate state: id syntax, ranges of
// amounts and quantities. Returns the rejection, or nullopt when valid.
std::optional<Rejection> validate(const Command& command);

}  // namespace shop
