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

# shop_warnings(target): the project's warning set, errors when SHOP_WERROR is on.
function(shop_warnings target)
  # Designated initializers rely on default member initializers, which GCC 12
  # reports as "missing"; the warning has no value with that idiom.
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wimplicit-fallthrough
                                           -Wno-missing-field-initializers)
  if(SHOP_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
