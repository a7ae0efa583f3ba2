# Sanitizer builds (OURO_SANITIZE): C++ only; nvcc takes none of these flags.
#   address: ASan + UBSan, and -fsanitize=bounds-strict because static __shared__ arrays are
#            thread_local arrays, which ASan gives no redzones: only bounds checks catch them.
#   thread:  TSan (the emulator drives it through its fiber API).
# ASan and TSan cannot share a process, hence two builds. Every report aborts
# (-fno-sanitize-recover) so that a bug makes the program exit non-zero.
set(OURO_SANITIZE "" CACHE STRING "Sanitizer build: '' (none), address (ASan+UBSan) or thread (TSan)")
set_property(CACHE OURO_SANITIZE PROPERTY STRINGS "" address thread)

set(OURO_SANITIZE_FLAGS "")
if(OURO_SANITIZE STREQUAL "address")
  set(OURO_SANITIZE_FLAGS -fsanitize=address,undefined,bounds-strict -fno-sanitize-recover=all)
elseif(OURO_SANITIZE STREQUAL "thread")
  set(OURO_SANITIZE_FLAGS -fsanitize=thread)
elseif(NOT OURO_SANITIZE STREQUAL "")
  message(FATAL_ERROR "OURO_SANITIZE must be '', address or thread (got '${OURO_SANITIZE}')")
endif()
if(OURO_SANITIZE_FLAGS)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${OURO_SANITIZE_FLAGS};-fno-omit-frame-pointer>")
  add_link_options(${OURO_SANITIZE_FLAGS})
endif()
