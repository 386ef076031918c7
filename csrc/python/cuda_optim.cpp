// Bindings for the CUDA multi-tensor steps: lists of device addresses and sizes become one
// TensorList; the launchers cut it into launches (csrc/cuda/chunk_schedule.h).
#include <pybind11/numpy.h>

#include <string>
#include <vector>

#include "../cuda/chunk_schedule.h"
#include "cuda_tensors.h"
#include "options_args.h"

namespace fastdl {
namespace glue {

namespace {

using namespace cuda_args;

void grad_sum_squares(const std::string& dtype, const py::sequence& grads, const py::sequence& sizes, uintptr_t out,
                      int device, uintptr_t stream) {
  DeviceTensors t(cuda_dtype(dtype), sizes);
  for (void* p : t.addresses(grads, "grads")) t.grads.push_back(p);
  check_loss(out);
  cuda::Place at = cuda_place(device, stream);
  TensorList<void> list = t.list();
  py::gil_scoped_release nogil;
  cuda::grad_sum_squares(t.dt, list, out, at);
}

void sgd_step(const std::string& dtype, const py::sequence& params, const py::sequence& grads,
              const py::object& momentum_buffers, const py::sequence& sizes, const py::object& steps,
              const py::object& options, uintptr_t clip_ptr, int device, uintptr_t stream, uintptr_t found_inf,
              const py::object& state_dtype) {
  SgdOptions o = sgd_options(options, device_clip(clip_ptr));
  checked_found_inf(found_inf);
  const bool f32_state = float32_state(dtype, state_dtype);
  DeviceTensors t(cuda_dtype(dtype), sizes);
  const cuda::DType st = f32_state ? cuda::DType::f32 : t.dt;
  t.params = t.addresses(params, "params");
  for (void* p : t.addresses(grads, "grads")) t.grads.push_back(p);
  if (o.momentum != 0.0) t.momentum_buffer = t.addresses(momentum_buffers, "momentum_buffers", st);
  t.set_steps(steps);
  cuda::Place at = cuda_place(device, stream);
  TensorList<void> list = t.list();
  py::gil_scoped_release nogil;
  cuda::sgd_step(t.dt, list, o, clip_ptr, found_inf, f32_state, at);
}

void adam_step(const std::string& dtype, const py::sequence& params, const py::sequence& grads,
               const py::object& exp_avgs, const py::object& exp_avg_sqs, const py::object& max_exp_avg_sqs,
               const py::sequence& sizes, const py::object& steps, const py::object& options, uintptr_t clip_ptr,
               int device, uintptr_t stream, const py::object& step_ptrs, uintptr_t found_inf,
               const py::object& state_dtype) {
  AdamOptions o = adam_options(options, device_clip(clip_ptr));
  checked_found_inf(found_inf);
  const bool f32_state = float32_state(dtype, state_dtype);
  DeviceTensors t(cuda_dtype(dtype), sizes);
  const cuda::DType st = f32_state ? cuda::DType::f32 : t.dt;
  t.params = t.addresses(params, "params");
  for (void* p : t.addresses(grads, "grads")) t.grads.push_back(p);
  t.exp_avg = t.addresses(exp_avgs, "exp_avgs", st);
  t.exp_avg_sq = t.addresses(exp_avg_sqs, "exp_avg_sqs", st);
  if (o.amsgrad) t.max_exp_avg_sq = t.addresses(max_exp_avg_sqs, "max_exp_avg_sqs", st);
  const std::vector<const float*> counts = step_addresses(step_ptrs, t.count());
  const float* const* count_ptrs = step_ptrs.is_none() ? nullptr : counts.data();
  if (!count_ptrs) t.set_steps(steps);
  cuda::Place at = cuda_place(device, stream);
  TensorList<void> list = t.list();
  py::gil_scoped_release nogil;
  cuda::adam_step(t.dt, list, o, clip_ptr, count_ptrs, found_inf, f32_state, at);
}

py::list chunk_schedule(const py::sequence& sizes_seq, int64_t max_tensors, int64_t max_blocks, int64_t chunk) {
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < static_cast<size_t>(py::len(sizes_seq)); ++i) sizes.push_back(sizes_seq[i].cast<int64_t>());
  std::vector<cuda::LaunchChunks> plan;
  try {
    plan = cuda::chunk_schedule(sizes.data(), static_cast<int64_t>(sizes.size()), max_tensors, max_blocks, chunk);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  py::list out;
  for (const cuda::LaunchChunks& launch : plan) {
    py::list blocks;
    for (const cuda::ChunkRange& c : launch) blocks.append(py::make_tuple(c.tensor, c.begin, c.end));
    out.append(blocks);
  }
  return out;
}

}  // namespace

void bind_cuda_optim(py::module_& m) {
  bind_option_fields(m);
  m.def("grad_sum_squares", &grad_sum_squares, py::arg("dtype"), py::arg("grads"), py::arg("sizes"), py::arg("out"),
        py::arg("device"), py::arg("stream"),
        "The sum of squares of every element of the tensors (the squared global norm), into the device double at "
        "`out`; deterministic.");
  m.def("sgd_step", &sgd_step, py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"),
        py::arg("sizes"), py::arg("steps"), py::arg("options"), py::arg("clip_ptr"), py::arg("device"),
        py::arg("stream"), py::arg("found_inf") = 0, py::arg("state_dtype") = py::none(),
        "One SGD step (torch.optim.SGD's update) over all tensors, in multi-tensor launches. steps: int64 array of "
        "each tensor's count including this step. clip_ptr != 0: the clipping factor is read on the device from "
        "that double (options.clip_coef is then ignored). found_inf != 0: the address of a device float32 "
        "(torch.amp.GradScaler's); where it is not 0 the step changes nothing. state_dtype='float32' with "
        "bfloat16 / float16 params: float32 momentum buffers (None: the params' dtype).");
  m.def("adam_step", &adam_step, py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"),
        py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("sizes"), py::arg("steps"), py::arg("options"),
        py::arg("clip_ptr"), py::arg("device"), py::arg("stream"), py::arg("step_ptrs") = py::none(),
        py::arg("found_inf") = 0, py::arg("state_dtype") = py::none(),
        "One Adam / AdamW step (torch.optim's update) over all tensors, in multi-tensor launches; as sgd_step. "
        "step_ptrs: None, or per tensor the address of its step count (this step included) in a device float32, "
        "read there instead of `steps` (which may then be None).");
  m.def("_chunk_schedule", &chunk_schedule, py::arg("sizes"), py::arg("max_tensors"), py::arg("max_blocks"),
        py::arg("chunk"),
        "How the multi-tensor launchers cut tensors of these sizes: a list of launches, each a list of "
        "(tensor index, begin, end) element ranges, one per thread block.");
  m.attr("DEFAULT_CHUNK") = cuda::kDefaultChunk;
  m.attr("MAX_TENSORS_PER_LAUNCH") = cuda::kMaxTensorsPerLaunch;
  m.attr("MAX_BLOCKS_PER_LAUNCH") = cuda::kMaxBlocksPerLaunch;
}

}  // namespace glue
}  // namespace fastdl
