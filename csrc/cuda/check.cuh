// Error handling and device/stream plumbing shared by the launchers (host code).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "launch.h"

namespace fastdl {
namespace cuda {

// "CUDA error cudaErrorInvalidValue (invalid argument) in softmax"
inline std::string error_message(cudaError_t e, const char* what) {
  return std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + what;
}

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(error_message(e, what));
}

// After every <<<...>>>: a bad configuration or an earlier asynchronous fault shows up here.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

// Makes `device` current for the call and restores the previous device after it; touches the
// current device only when it differs.
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* what) {
    int current = 0;
    check(cudaGetDevice(&current), what);
    if (current != device) {
      check(cudaSetDevice(device), what);
      previous_ = current;
    }
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);  // nothing to report from a destructor
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

inline cudaStream_t stream_of(const Place& at) { return reinterpret_cast<cudaStream_t>(at.stream); }

// A stream-ordered temporary: cudaMallocAsync now, cudaFreeAsync on the same stream when it goes
// out of scope (after the kernels that use it were queued, or after a failed launch).
template <class T>
class StreamBuffer {
 public:
  StreamBuffer(int64_t count, cudaStream_t stream, const char* what) : stream_(stream) {
    if (count > 0) check(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), sizeof(T) * count, stream), what);
  }
  ~StreamBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  cudaStream_t stream_;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline void require(bool ok, const char* message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace cuda
}  // namespace fastdl
