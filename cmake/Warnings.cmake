# Warnings on for our own targets only (not for dependencies).
function(moddit_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wno-unused-parameter>)
  # GCC 12 warns inside its own AVX-512 intrinsic headers when Eigen inlines them
  # (GCC bug 105593, fixed in GCC 13): not our code, and it buries real warnings.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-Wno-uninitialized -Wno-maybe-uninitialized>)
  endif()
endfunction()
