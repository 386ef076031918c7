// The adaptive optimizers' multi-tensor steps (RMSprop, Adagrad, Adadelta, Adamax, NAdam, Lion):
// one loop for every rule of csrc/kernels/adaptive_optimizers.h, over the pieces and vectors of
// optimizers.h (the total element count split evenly across threads, 16-bit storage widened to
// float). Included inside the per-ISA namespace, after optimizers.h.
#pragma once

// Parameters and gradients through accessor A, the state through S from the slots of St (S = A and
// St = L: state in the parameters' dtype; S = Lanes<float>: float32 state beside 16-bit parameters).
// A slot the configuration does not use is read as 0 and never written.
template <class Rule, class A, class S>
void adaptive_with(const TensorList<typename A::storage>& L, const TensorList<typename S::storage>& St,
                   const typename Rule::Options& o) {
  typedef typename A::storage T;
  typedef typename S::storage ST;
  typedef typename A::compute C;
  static_assert(std::is_same<C, typename S::compute>::value, "state and parameters share the compute type");
  typedef Vec<C> V;
  constexpr int N = Rule::kStates;
  const typename Rule::template Scalars<V> base = Rule::template scalars<V, C>(o);
  ST* const* slots[N];
  for (int j = 0; j < N; ++j) slots[j] = Rule::uses(o, j) ? St.*(Rule::template slot<ST>(j)) : nullptr;
  for_each_piece(L, [&](int64_t k, int64_t b, int64_t e) {
    typename Rule::template Scalars<V> s = base;
    Rule::template set_tensor<V, C>(
        s, Rule::template tensor<C>(o, L.steps[k], L.mu_products ? L.mu_products[k] : 0.0));
    T* p = L.params[k];
    const T* g = L.grads[k];
    ST* st[N];
    for (int j = 0; j < N; ++j) st[j] = slots[j] ? slots[j][k] : nullptr;
    for_each_vector<A>(b, e, [&](A at) {
      const S sa{at.i, at.n};
      V pv = at.load(p), sv[N];
      for (int j = 0; j < N; ++j) sv[j] = st[j] ? sa.load(st[j]) : V(C(0));
      Rule::update(pv, at.load(g), sv, s);
      at.store(pv, p);
      for (int j = 0; j < N; ++j)
        if (st[j]) sa.store(sv[j], st[j]);
    });
  });
}

template <class Rule, class A>
void adaptive_same(const TensorList<typename A::storage>& L, const typename Rule::Options& o) {
  adaptive_with<Rule, A, A>(L, L, o);
}

// One optimizer's entries of the kernel table (kernel_table.h): every storage type, and float32
// state beside the 16-bit ones.
template <class Rule>
constexpr StepKernels<typename Rule::Options> step_kernels_for() {
  return {adaptive_same<Rule, Lanes<float>>,        adaptive_same<Rule, Lanes<double>>,
          adaptive_same<Rule, HalfLanes<Bf16Bits>>, adaptive_same<Rule, HalfLanes<F16Bits>>,
          adaptive_with<Rule, HalfLanes<Bf16Bits>, Lanes<float>>,
          adaptive_with<Rule, HalfLanes<F16Bits>, Lanes<float>>};
}
