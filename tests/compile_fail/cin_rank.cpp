// CIN needs a (B, N, K) input: a (B, W) tensor is rejected with the layer's message.
// expect: ctrec::layers::cin: the input must be (B, N, K)
#include "ctrec/ctrec.hpp"
constexpr auto r = ctrec::layers::cin<"cin", ctrec::layers::cin_config<1>{.hidden_uints = {4}}>(ctrec::input<"x", 12>);
int main() {}
