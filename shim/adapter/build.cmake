# build.cmake - what building a runtime against each torch takes.  Part of
# the torch adapter: facts by torch series, read by shim/CMakeLists.txt.

# trw_adapter_cxx_standard(<series> <out>): the C++ standard torch's headers
# need.  C++17 from torch 2.1 (C++14 before, which 17 compiles); from 2.13
# ATen's headers refuse anything below C++20 (pytorch#178150).
function(trw_adapter_cxx_standard series out)
  if(series VERSION_GREATER_EQUAL 2.13)
    set(${out} 20 PARENT_SCOPE)
  else()
    set(${out} 17 PARENT_SCOPE)
  endif()
endfunction()
