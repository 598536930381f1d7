# Translates BARACUDA_CUDA_ARCHITECTURES ("80;90a") into explicit -gencode flags: SASS for
# each target, plus PTX of the lowest plain target so that newer GPUs can JIT it. The "a"
# targets (90a: wgmma, setmaxnreg) need the -gencode form; the -arch shorthand also runs a
# plain sm_90 pass that rejects them.
set(BARACUDA_CUDA_GENCODE_FLAGS "")
set(_baracuda_lowest_plain "")
foreach(arch IN LISTS BARACUDA_CUDA_ARCHITECTURES)
  if(NOT arch MATCHES "^[0-9]+a?$")
    message(FATAL_ERROR "BARACUDA_CUDA_ARCHITECTURES: '${arch}' is not a GPU target "
                        "(expected numbers such as 80 or 90a)")
  endif()
  list(APPEND BARACUDA_CUDA_GENCODE_FLAGS "-gencode=arch=compute_${arch},code=sm_${arch}")
  if(arch MATCHES "^[0-9]+$" AND (_baracuda_lowest_plain STREQUAL "" OR arch LESS _baracuda_lowest_plain))
    set(_baracuda_lowest_plain ${arch})
  endif()
endforeach()
if(NOT _baracuda_lowest_plain STREQUAL "")
  list(APPEND BARACUDA_CUDA_GENCODE_FLAGS
       "-gencode=arch=compute_${_baracuda_lowest_plain},code=compute_${_baracuda_lowest_plain}")
endif()

function(baracuda_set_cuda_targets target)
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES OFF)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:${BARACUDA_CUDA_GENCODE_FLAGS}>)
endfunction()
