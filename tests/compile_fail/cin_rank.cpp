// Graph-as-data core: CIN needs a (B, N, K) input: a (B, W) tensor is rejected with the layer's message.
// expect: ctrec_shape_error_cin_input_must_be_a_batched_B_by_N_by_K_tensor
// expect: {"cin"}
// expect: ctrec::shape_error::got[2]
// expect: ctrec::shape_error::want[3]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::cin<"cin", ctrec::layers::cin_config<1>{.hidden_uints = {4}}>(f::input<"x", 12>);
int main() {}
