# Compiler caching: nvcc is the slow part of a clean build, so route every compiler through
# ccache when it is installed.
find_program(BARACUDA_CCACHE ccache)
if(BARACUDA_CCACHE)
  foreach(lang C CXX CUDA)
    if(NOT CMAKE_${lang}_COMPILER_LAUNCHER)
      set(CMAKE_${lang}_COMPILER_LAUNCHER "${BARACUDA_CCACHE}")
    endif()
  endforeach()
endif()
