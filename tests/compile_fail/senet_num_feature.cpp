// SeNet: num_feature must match the number of fields of the input.
// expect: ctrec::layers::senet: num_feature must equal the number of fields N of the input
#include "ctrec/ctrec.hpp"
using namespace ctrec::layers;
constexpr auto r = senet<"se", senet_config{.num_feature = 5, .cmp_dim = 2}>(ctrec::input<"x", 4, 8>);
int main() {}
