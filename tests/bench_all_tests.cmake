# `ouro bench all` and the profiling wrapper (included from tests/CMakeLists.txt).
#
# bench_all_smoke: `ouro bench all --small` on the simt binary into a fresh directory, then
# tests/check_bench_report.py checks the report: bench.json's schema and every ratio = value /
# ceiling, bench.md's one row per record, the roofline PNG. bench_all_checker_rejects then
# corrupts copies of that report and expects the checker to reject each (so the check can fail).
# The figures are the emulator's; only the report's shape is tested.
if(OURO_SIMT_BIN AND NOT OURO_SIMT_ONLY)
  set(_bench_python ${CMAKE_SOURCE_DIR}/.venv/bin/python)
  if(EXISTS ${_bench_python})
    set(_bench_dir ${CMAKE_BINARY_DIR}/bench_all_smoke)
    set(_bench_check ${_bench_python} ${CMAKE_CURRENT_SOURCE_DIR}/check_bench_report.py ${_bench_dir}
                     --expect-bench kernels,train,generate)
    add_test(NAME bench_all_smoke
             COMMAND sh -c "rm -rf \"$1\" && \"$2\" bench all --small --out \"$1\"" bench_all_smoke
                     ${_bench_dir} $<TARGET_FILE:${OURO_SIMT_BIN}>)
    add_test(NAME bench_all_report_check COMMAND ${_bench_check})
    add_test(NAME bench_all_checker_rejects COMMAND ${_bench_check} --self-test)
    set_tests_properties(bench_all_smoke PROPERTIES TIMEOUT 600 LABELS simt FIXTURES_SETUP bench_all_report)
    set_tests_properties(bench_all_report_check bench_all_checker_rejects PROPERTIES
                         TIMEOUT 120 LABELS simt FIXTURES_REQUIRED bench_all_report)
  else()
    message(STATUS "bench_all_smoke: no tools venv (${_bench_python}): run tools/setup.sh")
  endif()
endif()

# tools/profile.sh --dry-run: the nsys and ncu command lines it would run (no profiler or GPU
# needed), and its refusal of a bad step range.
set(_profile ${CMAKE_SOURCE_DIR}/tools/profile.sh)
set(_profile_cfg ${CMAKE_SOURCE_DIR}/configs/tiny.toml)
add_test(NAME profile_sh_nsys_dry_run
         COMMAND ${_profile} nsys ${_profile_cfg} --steps 3:5 --out /tmp/ouro-profile --bin /opt/ouro --dry-run
                 --device cuda)
set_tests_properties(profile_sh_nsys_dry_run PROPERTIES LABELS tools PASS_REGULAR_EXPRESSION
  "^nsys profile --capture-range=cudaProfilerApi --capture-range-end=stop --trace=cuda.nvtx.osrt [^\n]*--output /tmp/ouro-profile/profile /opt/ouro train -c [^ ]*tiny.toml --profile-steps 3:5 --stop-at 5 --set run.out_dir=/tmp/ouro-profile/run --device cuda")
add_test(NAME profile_sh_ncu_dry_run
         COMMAND ${_profile} ncu ${_profile_cfg} --steps 10:12 --out /tmp/ouro-profile --bin /opt/ouro --dry-run
                 --ncu-set detailed -- --set train.batch_size=8)
set_tests_properties(profile_sh_ncu_dry_run PROPERTIES LABELS tools PASS_REGULAR_EXPRESSION
  "^ncu --clock-control none --profile-from-start off --kernel-name 'regex:gemm_tc\\|attention_' --launch-count 40 --set detailed [^\n]*--export /tmp/ouro-profile/profile /opt/ouro train -c [^ ]*tiny.toml --profile-steps 10:12 --stop-at 12 --set run.out_dir=/tmp/ouro-profile/run --set train.batch_size=8")
add_test(NAME profile_sh_rejects_bad_steps
         COMMAND ${_profile} nsys ${_profile_cfg} --steps 5:3 --dry-run)
set_tests_properties(profile_sh_rejects_bad_steps PROPERTIES LABELS tools
  PASS_REGULAR_EXPRESSION "--steps '5:3': B must be greater than A")

# tools/profile.sh as the Docker image's profile stage installs it (/opt/ouro/bin/ouro-profile,
# run from /workspace): it must find the ouro on PATH (tests/profile_sh_image.sh).
add_test(NAME profile_sh_image_paths_dry_run COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/profile_sh_image.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(profile_sh_image_paths_dry_run PROPERTIES LABELS "tools;docker" TIMEOUT 60)

# `ouro bench all --help` says where the default config is looked for (src/bench/bench_all.cpp).
if(TARGET ouro)
  add_test(NAME bench_all_help_names_config_search COMMAND $<TARGET_FILE:ouro> bench all --help)
  set_tests_properties(bench_all_help_names_config_search PROPERTIES LABELS tools TIMEOUT 30
    PASS_REGULAR_EXPRESSION "\\./configs \\(the working directory\\), then[ \n]+<binary>/\\.\\./share/ouro/configs")
endif()
