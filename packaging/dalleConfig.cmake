# find_package(dalle) for an installed libdalle: the imported target dalle::dalle
# (libdalle.so and include/dalle.h, dalle.hpp). Found relative to this file, so the
# installed tree may be moved: PREFIX/lib/cmake/dalle/ -> PREFIX.
get_filename_component(_dalle_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET dalle::dalle)
  add_library(dalle::dalle SHARED IMPORTED)
  set_target_properties(dalle::dalle PROPERTIES
    IMPORTED_LOCATION "${_dalle_prefix}/lib/libdalle.so.0"
    IMPORTED_SONAME "libdalle.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${_dalle_prefix}/include")
endif()
set(dalle_INCLUDE_DIRS "${_dalle_prefix}/include")
set(dalle_LIBRARIES dalle::dalle)
unset(_dalle_prefix)
