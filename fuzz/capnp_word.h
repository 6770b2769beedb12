// Force-included (-include) into every C++ file of the SHOP_FUZZ build.
//
// capnp/common.h makes capnp::word copyable under GCC and deliberately not
// under clang. bus/ keeps words in std::vector<capnp::word> (codec.h,
// codec_inl.h, server.h), which needs the copy, so it compiles with GCC
// only. This makes clang see word as GCC, which built Debian's libcapnp,
// sees it: only word's KJ_DISALLOW_COPY is neutralised; every kj header that
// capnp/common.h pulls in is included first, so all other classes keep
// theirs. TODO(build): drop this once bus/ stores words in a type that is
// copyable everywhere (e.g. std::vector<uint64_t> or kj::Array<capnp::word>).
#pragma once

#include <inttypes.h>
#include <kj/memory.h>
#include <kj/string.h>
#include <kj/units.h>
#include <kj/windows-sanity.h>

#pragma push_macro("KJ_DISALLOW_COPY")
#undef KJ_DISALLOW_COPY
#define KJ_DISALLOW_COPY(classname) static_assert(true, "copyable, as under GCC")
#include <capnp/common.h>
#pragma pop_macro("KJ_DISALLOW_COPY")
