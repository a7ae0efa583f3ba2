# The multi-rank device-path tests (tests/test_dist_device.cpp) call the device communicator
# in-process: link the simt device half, which holds it and the NCCL API over MPI.
if(TARGET ouro_test_dist_device AND TARGET ouro_device_simt)
  target_link_libraries(ouro_test_dist_device PRIVATE ouro_device_simt)
  target_compile_definitions(ouro_test_dist_device PRIVATE OURO_TEST_NCCL_OVER_MPI=1)
endif()
