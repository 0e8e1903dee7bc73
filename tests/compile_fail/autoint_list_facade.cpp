// AutoInt with out_type none gives a list of N tensors (merge_tensor_list); the facade's result
// holds one output, so the list needs the in-place function layers::autoint(m, scope, config, x).
// expect: ctrec_error_a_list_output_needs_the_in_place_layer_function
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::autoint<"a", ctrec::layers::autoint_config{.out_type = ctrec::layers::merge_type::none}>(f::input<"x", 3, 4>);
int main() {}
