// The _fastdl_cpu extension module: fastdl's C++ CPU kernels.
#include <omp.h>

#include <pybind11/stl.h>

#include "../cpu/dispatch.h"
#include "array_args.h"

namespace fastdl {
namespace glue {
void bind_ops(py::module_& m);
void bind_optim(py::module_& m);
}  // namespace glue
}  // namespace fastdl

namespace py = pybind11;
using namespace fastdl;

PYBIND11_MODULE(_fastdl_cpu, m) {
  m.doc() = "fastdl's fused CPU kernels (OpenMP threads, SIMD chosen at run time).";
  m.def("simd", [] { return std::string(cpu::kernels().isa); }, "The instruction set the kernels use now.");
  m.def("supported_simd", &cpu::supported_isas, "Instruction sets this build and this CPU support.");
  m.def("set_simd", &cpu::select_isa, py::arg("isa"), "Use the kernels built for `isa`; False if unsupported.");
  m.def("num_threads", [] { return omp_get_max_threads(); }, "Threads the kernels use.");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("n must be >= 1");
    omp_set_num_threads(n);
  }, py::arg("n"), "Sets the number of threads the kernels use.");
  glue::bind_ops(m);
  glue::bind_optim(m);
}
