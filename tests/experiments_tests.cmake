# One-round smoke versions of the self-improvement experiments (tools/experiments, docs/experiments.md):
# the whole pipeline (prepare, pretrain, every arm's rounds, eval, tools/plot.py's table and PNG)
# at toy sizes on the cpu backend. The figures are meaningless; what fails is a broken pipeline.
# The outputs stay under the build tree (experiments_smoke/) for inspection.
if(TARGET ouro AND NOT OURO_SIMT_ONLY)
  set(_exp_python ${CMAKE_SOURCE_DIR}/.venv/bin/python)
  if(EXISTS ${_exp_python})
    foreach(exp e1_addition e2_text)
      set(_out ${CMAKE_BINARY_DIR}/experiments_smoke/${exp})
      add_test(NAME experiment_${exp}_smoke
               COMMAND sh -c "rm -rf \"$1\" && OURO_BIN=\"$2\" OURO_PYTHON=\"$3\" \"$4\" --smoke --seeds 1 --out \"$1\" && test -s \"$1\"/*.png"
                       experiment_smoke ${_out} $<TARGET_FILE:ouro> ${_exp_python}
                       ${CMAKE_SOURCE_DIR}/tools/experiments/${exp}.sh)
      set_tests_properties(experiment_${exp}_smoke PROPERTIES TIMEOUT 900 LABELS experiments)
    endforeach()
  else()
    message(STATUS "experiment smoke tests: no tools venv (${_exp_python}): run tools/setup.sh")
  endif()
endif()
