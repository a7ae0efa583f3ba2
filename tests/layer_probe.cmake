# One wrong-way include probe (ctest layers_wrong_way_<layer>): compiles, against a layer's include
# view (cmake/OuroLayers.cmake), a file including a header the layer may use, which must compile,
# and a file including one it may not, which must fail because the header is not found.
#   cmake -DCXX=<compiler> -DVIEW=<build>/layers/<layer> -DALLOWED=<header> -DFORBIDDEN=<header>
#         -DWORK=<dir> -DFLAGS=<;-list> -P layer_probe.cmake
file(MAKE_DIRECTORY ${WORK})
foreach(kind allowed forbidden)
  string(TOUPPER ${kind} var)
  file(WRITE ${WORK}/${kind}.cpp "#include \"${${var}}\"\nint main() { return 0; }\n")
  execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only ${FLAGS} -I${VIEW} ${WORK}/${kind}.cpp
                  RESULT_VARIABLE rc_${kind} ERROR_VARIABLE err_${kind} OUTPUT_QUIET)
endforeach()
if(NOT rc_allowed EQUAL 0)
  message(FATAL_ERROR "the probe including ${ALLOWED} (allowed) does not compile against ${VIEW}:\n${err_allowed}")
endif()
if(rc_forbidden EQUAL 0)
  message(FATAL_ERROR "a wrong-way include compiled: ${FORBIDDEN} against ${VIEW}")
endif()
string(FIND "${err_forbidden}" "${FORBIDDEN}: No such file or directory" found)
if(found EQUAL -1)
  message(FATAL_ERROR "the probe including ${FORBIDDEN} failed for another reason than the header's absence:\n${err_forbidden}")
endif()
message(STATUS "${VIEW}: ${ALLOWED} compiles, ${FORBIDDEN} is out of reach")
