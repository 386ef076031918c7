// The _fastdl_cuda extension module: fastdl's CUDA kernels, driven by device addresses.
// Importing it touches no CUDA (the runtime is linked statically and loads the driver at the
// first call), so it imports on any machine; status() says whether kernels can run.
#include <pybind11/stl.h>

#include "cuda_args.h"

namespace fastdl {
namespace glue {
void bind_cuda_ops(py::module_& m);
void bind_cuda_optim(py::module_& m);
void bind_cuda_adaptive_optim(py::module_& m);
void bind_cuda_layers(py::module_& m);
}  // namespace glue
}  // namespace fastdl

namespace py = pybind11;
using namespace fastdl;

PYBIND11_MODULE(_fastdl_cuda, m) {
  m.doc() =
      "fastdl's CUDA kernels. Arrays are device addresses (ints, 0 = absent); every call queues its kernels on "
      "`stream` (a cudaStream_t as an int) on `device` and returns without waiting for the GPU.";
  m.def("status", [] {
    cuda::Status s;
    {
      py::gil_scoped_release nogil;  // the first CUDA call loads the driver
      s = cuda::probe();
    }
    py::dict d;
    d["devices"] = s.devices;
    d["reason"] = s.has_reason ? py::object(py::str(s.reason)) : py::object(py::none());
    d["runtime_version"] = s.runtime_version;
    d["driver_version"] = s.driver_version;
    return d;
  }, "{'devices': count, 'reason': why there is none (or None), 'runtime_version', 'driver_version'}.");
  m.def("device_name", [](int device) {
    if (device < 0) throw py::value_error("device must be >= 0");
    py::gil_scoped_release nogil;
    return cuda::device_name(device);
  }, py::arg("device"), "The name of CUDA device `device`.");
  py::dict ids;
  for (int i = 0; i < static_cast<int>(Activation::count); ++i) ids[kActivationNames[i]] = i;
  m.attr("ACTIVATIONS") = ids;
  glue::bind_cuda_ops(m);
  glue::bind_cuda_optim(m);
  glue::bind_cuda_adaptive_optim(m);
  glue::bind_cuda_layers(m);
}
