# CuTe / CUTLASS headers for the hopper kernels (wgmma and TMA atoms, mbarriers), from the
# pinned nvidia-cutlass wheel: the pip build lists it in build-system.requires, tests/run.sh
# installs it into its environment. BARACUDA_CUTLASS_INCLUDE_DIR overrides the search.
set(BARACUDA_CUTLASS_VERSION "4.2.0.0")
set(BARACUDA_CUTLASS_INCLUDE_DIR "" CACHE PATH
    "Directory holding cute/ and cutlass/ (default: found in the nvidia-cutlass wheel)")

function(baracuda_find_cutlass out_dir)
  set(dir "${BARACUDA_CUTLASS_INCLUDE_DIR}")
  if(NOT dir)
    find_package(Python3 COMPONENTS Interpreter QUIET)
    if(Python3_Interpreter_FOUND)
      # find_spec locates the wheel's package without importing it (it needs no dependency).
      execute_process(
        COMMAND "${Python3_EXECUTABLE}" -c
          "import importlib.util, os; s = importlib.util.find_spec('cutlass_library'); print(os.path.join(list(s.submodule_search_locations)[0], 'source', 'include') if s else '')"
        OUTPUT_VARIABLE dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    endif()
  endif()
  if(NOT dir OR NOT EXISTS "${dir}/cute/arch/mma_sm90.hpp")
    message(FATAL_ERROR
      "The hopper kernels (BARACUDA_CUDA_ARCHITECTURES has 90a) need the CuTe / CUTLASS headers "
      "(got '${dir}', expected a directory with cute/arch/mma_sm90.hpp): "
      "pip install nvidia-cutlass==${BARACUDA_CUTLASS_VERSION} for the Python found by CMake "
      "(${Python3_EXECUTABLE}), or set BARACUDA_CUTLASS_INCLUDE_DIR, or leave 90a out of "
      "BARACUDA_CUDA_ARCHITECTURES")
  endif()
  message(STATUS "CuTe / CUTLASS headers: ${dir}")
  set(${out_dir} "${dir}" PARENT_SCOPE)
endfunction()
