// Python bindings of backends/cpu (module backends.cpu._bn_cpu). Binding only: arrays become
// ArrayRefs with the GIL held, then the operation runs with the GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <optional>

#include "ops.h"
#include "quantized.h"

namespace nb = nanobind;
using Array = nb::ndarray<nb::ro, nb::device::cpu>;
using OptArray = std::optional<Array>;

namespace {

bn::ArrayRef ref(const char* name, const Array& a) {
  bn::ArrayRef r;
  r.name = name;
  r.data = const_cast<void*>(a.data());
  const auto dt = a.dtype();
  switch (static_cast<nb::dlpack::dtype_code>(dt.code)) {
    case nb::dlpack::dtype_code::Float: r.kind = 'f'; break;
    case nb::dlpack::dtype_code::UInt: r.kind = 'u'; break;
    case nb::dlpack::dtype_code::Int: r.kind = 'i'; break;
    case nb::dlpack::dtype_code::Bfloat: r.kind = 'b'; break;
    default: r.kind = '?'; break;
  }
  r.bits = dt.bits * dt.lanes;
  if (a.ndim() > 16) throw std::invalid_argument(std::string(name) + " has more than 16 dimensions");
  r.ndim = static_cast<int>(a.ndim());
  for (int i = 0; i < r.ndim; ++i) {
    r.shape[i] = static_cast<std::int64_t>(a.shape(i));
    r.strides[i] = static_cast<std::int64_t>(a.stride(i));
  }
  return r;
}

bn::ArrayRef ref(const char* name, const OptArray& a) {
  if (!a) {
    bn::ArrayRef r;
    r.name = name;
    return r;
  }
  return ref(name, *a);
}

bn::DType dtype_of(int code) {
  if (code < 0 || code > 3) throw std::invalid_argument("dtype code " + std::to_string(code) + " is not 0..3");
  return static_cast<bn::DType>(code);
}

}  // namespace

NB_MODULE(_bn_cpu, m) {
  m.doc() = "Optimized CPU batch norm (mxnet.npx.batch_norm semantics). Use backends.cpu.";

  m.def("forward",
        [](int dtype, const Array& x, const Array& gamma, const Array& beta, const Array& running_mean,
           const Array& running_var, const OptArray& y, const Array& mean_out, const Array& invstd_out,
           int axis, double eps, bool fix_gamma, bool batch_stats) {
          bn::ForwardArgs a;
          a.dtype = dtype_of(dtype);
          a.x = ref("x", x);
          a.gamma = ref("gamma", gamma);
          a.beta = ref("beta", beta);
          a.running_mean = ref("running_mean", running_mean);
          a.running_var = ref("running_var", running_var);
          a.y = ref("y", y);
          a.mean_out = ref("mean", mean_out);
          a.invstd_out = ref("invstd", invstd_out);
          a.axis = axis;
          a.eps = eps;
          a.fix_gamma = fix_gamma;
          a.batch_stats = batch_stats;
          nb::gil_scoped_release unlocked;
          bn::op_forward(a);
        },
        nb::arg("dtype"), nb::arg("x").noconvert(), nb::arg("gamma").noconvert(),
        nb::arg("beta").noconvert(), nb::arg("running_mean").noconvert(),
        nb::arg("running_var").noconvert(), nb::arg("y").noconvert().none(),
        nb::arg("mean_out").noconvert(), nb::arg("invstd_out").noconvert(), nb::arg("axis"),
        nb::arg("eps"), nb::arg("fix_gamma"), nb::arg("batch_stats"),
        "Forward pass into preallocated y (or statistics only when y is None), mean_out, invstd_out.");

  m.def("train_step",
        [](int dtype, const Array& x, const Array& dy, const Array& gamma, const Array& beta,
           const Array& running_mean, const Array& running_var, const OptArray& saved_mean,
           const OptArray& saved_invstd, const Array& dx, const Array& dgamma, const Array& dbeta,
           int axis, double eps, double momentum, bool fix_gamma, bool batch_stats,
           bool update_running) {
          bn::TrainArgs a;
          a.dtype = dtype_of(dtype);
          a.x = ref("x", x);
          a.dy = ref("dy", dy);
          a.gamma = ref("gamma", gamma);
          a.beta = ref("beta", beta);
          a.running_mean = ref("running_mean", running_mean);
          a.running_var = ref("running_var", running_var);
          a.saved_mean = ref("saved_mean", saved_mean);
          a.saved_invstd = ref("saved_invstd", saved_invstd);
          a.dx = ref("dx", dx);
          a.dgamma = ref("dgamma", dgamma);
          a.dbeta = ref("dbeta", dbeta);
          a.axis = axis;
          a.eps = eps;
          a.momentum = momentum;
          a.fix_gamma = fix_gamma;
          a.batch_stats = batch_stats;
          a.update_running = update_running;
          nb::gil_scoped_release unlocked;
          bn::op_train_step(a);
        },
        nb::arg("dtype"), nb::arg("x").noconvert(), nb::arg("dy").noconvert(),
        nb::arg("gamma").noconvert(), nb::arg("beta").noconvert(),
        nb::arg("running_mean").noconvert(), nb::arg("running_var").noconvert(),
        nb::arg("saved_mean").noconvert().none(), nb::arg("saved_invstd").noconvert().none(),
        nb::arg("dx").noconvert(), nb::arg("dgamma").noconvert(), nb::arg("dbeta").noconvert(),
        nb::arg("axis"), nb::arg("eps"), nb::arg("momentum"), nb::arg("fix_gamma"),
        nb::arg("batch_stats"), nb::arg("update_running"),
        "Forward statistics (or saved ones) then backward into dx, dgamma, dbeta; updates the "
        "running statistics in place when batch_stats and update_running.");

  m.def("triad",
        [](const Array& a, const Array& b, const Array& c, double s, bool stream) {
          const bn::ArrayRef ra = ref("a", a), rb = ref("b", b), rc = ref("c", c);
          nb::gil_scoped_release unlocked;
          bn::op_triad(ra, rb, rc, s, stream);
        },
        nb::arg("a").noconvert(), nb::arg("b").noconvert(), nb::arg("c").noconvert(), nb::arg("s"),
        nb::arg("stream") = false, "a = b + s * c on float32 arrays (the bandwidth floor).");

  // The quantized path (quantized.h): int8/uint8 x into a preallocated int8 out.
  m.def("quantized",
        [](const Array& x, const Array& gamma, const Array& beta, const Array& running_mean,
           const Array& running_var, const Array& out, int axis, double eps, double data_scale,
           double output_scale) {
          bn::QuantizedArgs a;
          a.x = ref("x", x);
          a.gamma = ref("gamma", gamma);
          a.beta = ref("beta", beta);
          a.running_mean = ref("running_mean", running_mean);
          a.running_var = ref("running_var", running_var);
          a.out = ref("out", out);
          a.axis = axis;
          a.eps = eps;
          a.data_scale = data_scale;
          a.output_scale = output_scale;
          nb::gil_scoped_release unlocked;
          bn::op_quantized(a);
        },
        nb::arg("x").noconvert(), nb::arg("gamma").noconvert(), nb::arg("beta").noconvert(),
        nb::arg("running_mean").noconvert(), nb::arg("running_var").noconvert(),
        nb::arg("out").noconvert(), nb::arg("axis"), nb::arg("eps"), nb::arg("data_scale"),
        nb::arg("output_scale"),
        "Quantized batch norm: int8/uint8 x, float32 parameters, data range scale A and "
        "calibration scale B, into int8 out.");

  m.def("set_isa", &bn::set_isa, nb::arg("name"),
        "Choose the kernels: 'avx512', 'avx2', 'portable', or 'auto'.");
  m.def("get_isa", &bn::current_isa);
  m.def("available_isas", &bn::available_isas);
  m.def("set_num_threads", &bn::set_num_threads, nb::arg("n"),
        "Threads per call; 0 restores the OpenMP default (OMP_NUM_THREADS).");
  m.def("get_num_threads", &bn::get_num_threads);
  m.def("has_openmp", &bn::has_openmp);
}
