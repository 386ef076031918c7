// The _fastdl_cpu extension module: fastdl's C++ CPU kernels.
#include <pybind11/stl.h>

#include "../cpu/dispatch.h"
#include "array_args.h"

namespace fastdl {
namespace glue {
void bind_ops(py::module_& m);
void bind_optim(py::module_& m);
void bind_adaptive_optim(py::module_& m);
void bind_layers(py::module_& m);
}  // namespace glue
}  // namespace fastdl

namespace py = pybind11;
using namespace fastdl;

PYBIND11_MODULE(_fastdl_cpu, m) {
  m.doc() = "fastdl's fused CPU kernels (OpenMP threads, SIMD chosen at run time).";
  m.def("simd", [] { return std::string(cpu::kernels().isa); }, "The instruction set the kernels use now.");
  m.def("supported_simd", &cpu::supported_isas, "Instruction sets this build and this CPU support.");
  m.def("set_simd", &cpu::select_isa, py::arg("isa"), "Use the kernels built for `isa`; False if unsupported.");
  cpu::kernels();  // choose the ISA now, with the GIL held
  m.def("num_threads", [] { return cpu::thread_limit; }, "Threads the kernels use (process-wide).");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("n must be >= 1");
    cpu::thread_limit = n;
  }, py::arg("n"), "Sets how many threads the kernels use, for every calling thread.");
  m.def("_stream_threshold", [] { return cpu::stream_threshold_bytes; },
        "Outputs of at least this many bytes are written with streaming stores.");
  m.def("_set_stream_threshold", [](int64_t bytes) { cpu::stream_threshold_bytes = bytes; }, py::arg("bytes"),
        "For tests and benchmarks: moves the streaming-store threshold.");
  glue::bind_ops(m);
  glue::bind_optim(m);
  glue::bind_adaptive_optim(m);
  glue::bind_layers(m);
}
