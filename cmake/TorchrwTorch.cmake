# Which torches get a runtime, and what building against each one takes.
#
#   -DPython3_EXECUTABLE=/path/python   one runtime, for that interpreter's torch
#   -DTORCHRW_PYTHONS="/a/python;/b/python"   one runtime each, side by side
#   neither                              the first python3 on PATH that imports
#                                        torch, else Debian's libtorch
#
# Each torch is probed by running its interpreter (cmake/probe_torch.py):
# the headers and libraries torch.utils.cpp_extension names, and the C++ ABI
# flag torch was built with.  find_package(Torch) is not used: on a CUDA
# build of torch it goes looking for the CUDA toolkit, and the runtime needs
# only the CPU libraries.

file(STRINGS ${PROJECT_SOURCE_DIR}/shim/adapter/versions.h _trw_known
     REGEX "#define TRW_TORCH_(OLDEST|NEWEST) ")
string(REGEX REPLACE ".*OLDEST \"([0-9.]+)\".*" "\\1" TRW_TORCH_OLDEST "${_trw_known}")
string(REGEX REPLACE ".*NEWEST \"([0-9.]+)\".*" "\\1" TRW_TORCH_NEWEST "${_trw_known}")

option(TORCHRW_UNKNOWN_TORCH
       "Build for a torch newer than shim/adapter knows, with the newest facts" OFF)

# trw_probe_python(<exe> <prefix>): sets <prefix>_ERROR, or <prefix>_VERSION,
# _SERIES (major.minor), _MAJOR, _MINOR, _INCLUDES, _LIBDIRS, _ABI,
# _PYINCLUDE and _EXE, in the caller's scope.
function(trw_probe_python exe prefix)
  foreach(k ERROR VERSION SERIES MAJOR MINOR INCLUDES LIBDIRS ABI PYINCLUDE EXE)
    set(${prefix}_${k} "" PARENT_SCOPE)
  endforeach()
  execute_process(
    COMMAND ${exe} ${PROJECT_SOURCE_DIR}/cmake/probe_torch.py
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
    TIMEOUT 300)
  if(NOT rc EQUAL 0)
    string(STRIP "${err}" err)
    set(${prefix}_ERROR "${exe} did not run (${rc}): ${err}" PARENT_SCOPE)
    return()
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  foreach(line IN LISTS lines)
    if(line MATCHES "^([a-z_0-9]+)=(.*)$")
      set(v_${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
    endif()
  endforeach()
  if(v_error)
    set(${prefix}_ERROR "${exe}: ${v_error}" PARENT_SCOPE)
    set(${prefix}_PYINCLUDE "${v_python_include}" PARENT_SCOPE)
    return()
  endif()
  if(NOT v_torch_version MATCHES "^([0-9]+)\\.([0-9]+)")
    set(${prefix}_ERROR "${exe}: torch.__version__ is '${v_torch_version}'" PARENT_SCOPE)
    return()
  endif()
  set(${prefix}_MAJOR ${CMAKE_MATCH_1} PARENT_SCOPE)
  set(${prefix}_MINOR ${CMAKE_MATCH_2} PARENT_SCOPE)
  set(${prefix}_SERIES "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}" PARENT_SCOPE)
  set(${prefix}_VERSION "${v_torch_version}" PARENT_SCOPE)
  set(${prefix}_INCLUDES "${v_torch_includes}" PARENT_SCOPE)
  set(${prefix}_LIBDIRS "${v_torch_libdirs}" PARENT_SCOPE)
  set(${prefix}_ABI "${v_torch_cxx11_abi}" PARENT_SCOPE)
  set(${prefix}_PYINCLUDE "${v_python_include}" PARENT_SCOPE)
  set(${prefix}_EXE "${v_python}" PARENT_SCOPE)
endfunction()

# Debian's libtorch-dev without a Python that imports torch: its headers in
# /usr/include, its version from torch/version.h.
function(trw_probe_system_torch prefix)
  set(h /usr/include/torch/csrc/api/include/torch/version.h)
  set(${prefix}_ERROR "no libtorch headers in /usr/include (Debian: libtorch-dev)" PARENT_SCOPE)
  if(NOT EXISTS ${h})
    return()
  endif()
  file(STRINGS ${h} defs REGEX "#define TORCH_VERSION_(MAJOR|MINOR|PATCH) ")
  string(REGEX REPLACE ".*MAJOR ([0-9]+).*" "\\1" major "${defs}")
  string(REGEX REPLACE ".*MINOR ([0-9]+).*" "\\1" minor "${defs}")
  string(REGEX REPLACE ".*PATCH ([0-9]+).*" "\\1" patch "${defs}")
  set(${prefix}_ERROR "" PARENT_SCOPE)
  set(${prefix}_MAJOR ${major} PARENT_SCOPE)
  set(${prefix}_MINOR ${minor} PARENT_SCOPE)
  set(${prefix}_SERIES "${major}.${minor}" PARENT_SCOPE)
  set(${prefix}_VERSION "${major}.${minor}.${patch}" PARENT_SCOPE)
  set(${prefix}_INCLUDES "/usr/include;/usr/include/torch/csrc/api/include" PARENT_SCOPE)
  set(${prefix}_LIBDIRS "" PARENT_SCOPE)
  set(${prefix}_ABI 1 PARENT_SCOPE)
endfunction()

# Refuses a torch outside what shim/adapter knows.
function(trw_check_known prefix what)
  set(v ${${prefix}_SERIES})
  if(v VERSION_LESS TRW_TORCH_OLDEST)
    message(FATAL_ERROR "torchrw: ${what} has torch ${${prefix}_VERSION}, older than any "
                        "torch shim/adapter knows (${TRW_TORCH_OLDEST} to ${TRW_TORCH_NEWEST}).")
  endif()
  if(v VERSION_GREATER TRW_TORCH_NEWEST)
    if(TORCHRW_UNKNOWN_TORCH)
      message(WARNING "torchrw: torch ${${prefix}_VERSION} is newer than any torch "
                      "shim/adapter knows; building with ${TRW_TORCH_NEWEST}'s facts "
                      "(TORCHRW_UNKNOWN_TORCH=ON).")
    else()
      message(FATAL_ERROR
        "torchrw: ${what} has torch ${${prefix}_VERSION}, newer than any torch "
        "shim/adapter knows (${TRW_TORCH_OLDEST} to ${TRW_TORCH_NEWEST}). Add its facts to "
        "shim/adapter (see versions.h), or configure with -DTORCHRW_UNKNOWN_TORCH=ON to "
        "try ${TRW_TORCH_NEWEST}'s.")
    endif()
  endif()
endfunction()

# The interpreters to build for, as TRW_TORCH_PYTHONS, and each one's
# probe as TRW_T<i>_*; TRW_TORCH_COUNT of them.  Says what it took.
function(trw_choose_torches)
  set(explicit "")
  if(TORCHRW_PYTHONS)
    set(explicit ${TORCHRW_PYTHONS})
  elseif(Python3_EXECUTABLE)
    set(explicit ${Python3_EXECUTABLE})
  endif()
  set(count 0)
  set(series_seen "")
  if(explicit)
    foreach(exe IN LISTS explicit)
      trw_probe_python(${exe} p)
      if(p_ERROR)
        message(FATAL_ERROR "torchrw: cannot build for ${exe}: ${p_ERROR}\n"
                            "Install torch for that interpreter, or name one that has it "
                            "(-DPython3_EXECUTABLE=... or -DTORCHRW_PYTHONS=\"a;b\").")
      endif()
      trw_check_known(p ${exe})
      if(p_SERIES IN_LIST series_seen)
        message(FATAL_ERROR "torchrw: two interpreters have torch ${p_SERIES}; "
                            "one runtime serves each torch series, name one of them.")
      endif()
      list(APPEND series_seen ${p_SERIES})
      foreach(k VERSION SERIES MAJOR MINOR INCLUDES LIBDIRS ABI PYINCLUDE EXE)
        set(TRW_T${count}_${k} "${p_${k}}" PARENT_SCOPE)
      endforeach()
      math(EXPR count "${count} + 1")
    endforeach()
  else()
    # The first python3 on PATH that imports torch.
    string(REPLACE ":" ";" dirs "$ENV{PATH}")
    set(first_py "")
    foreach(d IN LISTS dirs)
      if(NOT IS_DIRECTORY "${d}" OR NOT EXISTS "${d}/python3")
        continue()
      endif()
      trw_probe_python("${d}/python3" p)
      if(NOT first_py AND p_PYINCLUDE)
        set(first_py "${d}/python3")
        set(first_pyinclude "${p_PYINCLUDE}")
      endif()
      if(NOT p_ERROR)
        trw_check_known(p "${d}/python3")
        message(STATUS "torchrw: no interpreter named; took ${d}/python3, the first "
                       "python3 on PATH that imports torch")
        foreach(k VERSION SERIES MAJOR MINOR INCLUDES LIBDIRS ABI PYINCLUDE EXE)
          set(TRW_T0_${k} "${p_${k}}" PARENT_SCOPE)
        endforeach()
        set(count 1)
        break()
      endif()
    endforeach()
    if(count EQUAL 0)
      trw_probe_system_torch(p)
      if(p_ERROR OR NOT first_py)
        message(FATAL_ERROR
          "torchrw: found no torch to build for: no python3 on PATH imports torch, and "
          "${p_ERROR}${first_py}. Name an interpreter that has torch with "
          "-DPython3_EXECUTABLE=..., or install Debian's libtorch-dev and python3-dev.")
      endif()
      trw_check_known(p "Debian's libtorch-dev")
      message(STATUS "torchrw: no python3 on PATH imports torch; took Debian's libtorch "
                     "${p_VERSION} (/usr/include) with ${first_py}'s headers")
      foreach(k VERSION SERIES MAJOR MINOR INCLUDES LIBDIRS ABI)
        set(TRW_T0_${k} "${p_${k}}" PARENT_SCOPE)
      endforeach()
      set(TRW_T0_PYINCLUDE "${first_pyinclude}" PARENT_SCOPE)
      set(TRW_T0_EXE "${first_py}" PARENT_SCOPE)
      set(count 1)
    endif()
  endif()
  set(TRW_TORCH_COUNT ${count} PARENT_SCOPE)
endfunction()
