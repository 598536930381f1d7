# Kernel instances: one generated .cu per (element, head-dim bucket) so that builds
# parallelise, and one generated table that the plan dispatches from.
#
# baracuda_portable_instances(<out_sources_var> <out_table_file>)
#   instantiates the portable flash kernel for f32, f16, bf16, f64 and every bucket of
#   BARACUDA_HEAD_DIM_BUCKETS.
# baracuda_hopper_instances(<out_sources_var> <out_table_file>)
#   instantiates the hopper flash kernel for f16, bf16 and every bucket of
#   BARACUDA_HEAD_DIM_BUCKETS that is whole wgmma k-steps (a multiple of 16), when
#   BARACUDA_CUDA_ARCHITECTURES has 90a; otherwise the table is empty.
set(_baracuda_elements f32 f16 bf16 f64)
set(_baracuda_cuda_type_f32 "float")
set(_baracuda_cuda_type_f16 "__half")
set(_baracuda_cuda_type_bf16 "__nv_bfloat16")
set(_baracuda_cuda_type_f64 "double")
set(_baracuda_enum_f32 "BARACUDA_ELEMENT_F32")
set(_baracuda_enum_f16 "BARACUDA_ELEMENT_F16")
set(_baracuda_enum_bf16 "BARACUDA_ELEMENT_BF16")
set(_baracuda_enum_f64 "BARACUDA_ELEMENT_F64")

# One instance of kernel family <family> ("portable", "hopper"): generates its .cu from
# flash_sdpa_<family>_instance.cu.in, appends the file to <sources_var> and the instance's
# table row ({element, bucket, &prepare_<family>, &launch_<family>}) to <rows_var>.
function(_baracuda_kernel_instance family element bucket sources_var rows_var)
  set(type "${_baracuda_cuda_type_${element}}")
  set(BARACUDA_INSTANCE_TYPE "${type}")
  set(BARACUDA_INSTANCE_BUCKET "${bucket}")
  set(file "${CMAKE_CURRENT_BINARY_DIR}/generated/flash_sdpa_${family}_${element}_d${bucket}.cu")
  configure_file("${PROJECT_SOURCE_DIR}/libbaracuda/src/flash_sdpa/flash_sdpa_${family}_instance.cu.in"
                 "${file}" @ONLY)
  set(sources "${${sources_var}}")
  list(APPEND sources "${file}")
  set(${sources_var} "${sources}" PARENT_SCOPE)
  set(${rows_var}
    "${${rows_var}}    {${_baracuda_enum_${element}}, ${bucket}, &prepare_${family}<${type}, ${bucket}>, &launch_${family}<${type}, ${bucket}>},\n"
    PARENT_SCOPE)
endfunction()

function(baracuda_portable_instances out_sources out_table)
  set(dir "${CMAKE_CURRENT_BINARY_DIR}/generated")
  set(sources "")
  set(rows "")
  list(SORT BARACUDA_HEAD_DIM_BUCKETS COMPARE NATURAL)
  foreach(bucket IN LISTS BARACUDA_HEAD_DIM_BUCKETS)
    if(NOT bucket MATCHES "^[0-9]+$" OR bucket GREATER 256 OR NOT bucket GREATER 0)
      message(FATAL_ERROR "BARACUDA_HEAD_DIM_BUCKETS: '${bucket}' is not a head dim in 1..256")
    endif()
  endforeach()
  foreach(element IN LISTS _baracuda_elements)
    foreach(bucket IN LISTS BARACUDA_HEAD_DIM_BUCKETS)
      _baracuda_kernel_instance(portable ${element} ${bucket} sources rows)
    endforeach()
  endforeach()
  set(BARACUDA_PORTABLE_INSTANCE_ROWS "${rows}")
  configure_file("${PROJECT_SOURCE_DIR}/libbaracuda/src/flash_sdpa/flash_sdpa_portable_table.inc.in"
                 "${dir}/flash_sdpa_portable_table.inc" @ONLY)
  set(${out_sources} "${sources}" PARENT_SCOPE)
  set(${out_table} "${dir}/flash_sdpa_portable_table.inc" PARENT_SCOPE)
endfunction()

set(_baracuda_hopper_elements f16 bf16)
set(_baracuda_hopper_k_step 16)

function(baracuda_hopper_instances out_sources out_table)
  set(dir "${CMAKE_CURRENT_BINARY_DIR}/generated")
  set(sources "")
  set(rows "")
  set(count 0)
  list(SORT BARACUDA_HEAD_DIM_BUCKETS COMPARE NATURAL)
  if("90a" IN_LIST BARACUDA_CUDA_ARCHITECTURES)
    foreach(element IN LISTS _baracuda_hopper_elements)
      foreach(bucket IN LISTS BARACUDA_HEAD_DIM_BUCKETS)
        math(EXPR remainder "${bucket} % ${_baracuda_hopper_k_step}")
        if(NOT remainder EQUAL 0)
          continue()
        endif()
        _baracuda_kernel_instance(hopper ${element} ${bucket} sources rows)
        math(EXPR count "${count} + 1")
      endforeach()
    endforeach()
  endif()
  set(BARACUDA_HOPPER_INSTANCE_ROWS "${rows}")
  set(BARACUDA_HOPPER_INSTANCE_COUNT "${count}")
  configure_file("${PROJECT_SOURCE_DIR}/libbaracuda/src/flash_sdpa/flash_sdpa_hopper_table.inc.in"
                 "${dir}/flash_sdpa_hopper_table.inc" @ONLY)
  set(${out_sources} "${sources}" PARENT_SCOPE)
  set(${out_table} "${dir}/flash_sdpa_hopper_table.inc" PARENT_SCOPE)
endfunction()
