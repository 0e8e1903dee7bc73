// Graph-as-data core: AutoInt's self-attention needs a per-example (N, K) matrix; the layer checks
// the rank before building its self_attention nodes (self_attention_rank.cpp: the op's own check).
// expect: ctrec_shape_error_autoint_input_must_be_a_batched_B_by_N_by_K_tensor
// expect: {"ai"}
// expect: ctrec::shape_error::got[2]
// expect: ctrec::shape_error::want[3]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::autoint<"ai", ctrec::layers::autoint_config{.layer_num = 1}>(f::input<"x", 12>);
int main() {}
