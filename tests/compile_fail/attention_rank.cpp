// Graph-as-data core: self-attention needs a per-example (N, K) matrix. The flat core has no
// self_attention op; its one self-attention is AutoInt's (softmax(X X^T) X), which checks the rank.
// expect: ctrec_shape_error_autoint_input_must_be_a_batched_B_by_N_by_K_tensor
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::autoint<"ai", ctrec::layers::autoint_config{.layer_num = 1}>(f::input<"x", 12>);
int main() {}
