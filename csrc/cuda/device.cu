// Probing for a usable GPU without failing: why CUDA cannot run here, in words.
#include <string>

#include "check.cuh"

namespace fastdl {
namespace cuda {

Status probe() {
  Status st{0, false, std::string(), 0, 0};
  cudaRuntimeGetVersion(&st.runtime_version);
  cudaDriverGetVersion(&st.driver_version);  // 0 without a driver
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  cudaGetLastError();  // probing must not leave an error behind for the next call to report
  if (e == cudaSuccess && count > 0) {
    st.devices = count;
    return st;
  }
  st.has_reason = true;
  if (e == cudaSuccess || e == cudaErrorNoDevice) {
    st.reason = "no CUDA device";
  } else if (e == cudaErrorInsufficientDriver && st.driver_version == 0) {
    st.reason = "no NVIDIA driver";
  } else if (e == cudaErrorInsufficientDriver) {
    const int v = st.driver_version;
    st.reason = "the NVIDIA driver (version " + std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10) +
                ") is older than CUDA " + std::to_string(st.runtime_version / 1000) + " needs";
  } else {
    st.reason = error_message(e, "cudaGetDeviceCount");
  }
  return st;
}

std::string device_name(int device) {
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, device), "device_name");
  return std::string(prop.name);
}

}  // namespace cuda
}  // namespace fastdl
