# Per-target build settings shared by every shop target.

if(SHOP_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
elseif(SHOP_SANITIZE STREQUAL "thread")
  # -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence, which
  # moodycamel uses; whether that yields false reports is settled by running.
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
  add_link_options(-fsanitize=thread)
elseif(NOT SHOP_SANITIZE STREQUAL "")
  message(FATAL_ERROR "SHOP_SANITIZE must be '', 'address' or 'thread'")
endif()

# SHOP_FUZZ: every target carries libFuzzer's coverage instrumentation and
# ASan+UBSan, so that fuzz/ can link its libFuzzer binaries
# (-fsanitize=fuzzer) against instrumented core and bus libraries; and sees
# capnp::word as GCC does (fuzz/capnp_word.h says why).
if(SHOP_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "SHOP_FUZZ needs clang: CC=clang-14 CXX=clang++-14 (see fuzz/README.md)")
  endif()
  if(NOT SHOP_SANITIZE STREQUAL "")
    message(FATAL_ERROR "SHOP_FUZZ brings ASan+UBSan itself: leave SHOP_SANITIZE empty")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all
                      "$<$<COMPILE_LANGUAGE:CXX>:SHELL:-include ${PROJECT_SOURCE_DIR}/fuzz/capnp_word.h>")
  add_link_options(-fsanitize=address,undefined)
endif()

# shop_warnings(target): the project's warning set, errors when SHOP_WERROR is on.
function(shop_warnings target)
  # Designated initializers rely on default member initializers, which GCC 12
  # reports as "missing"; the warning has no value with that idiom.
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wimplicit-fallthrough
                                           -Wno-missing-field-initializers)
  # Clang (the SHOP_FUZZ build) meets GCC-only names in `#pragma GCC
  # diagnostic` (core/shard.cpp: -Wstringop-overflow); they are GCC's business.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    target_compile_options(${target} PRIVATE -Wno-unknown-warning-option)
  endif()
  if(SHOP_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
