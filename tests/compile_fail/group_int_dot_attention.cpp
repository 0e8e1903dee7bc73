// Graph-as-data core: GroupInt's attention re-weights pair vectors, so it needs interaction_type multiply.
// expect: ctrec_shape_error_group_int_use_attention_needs_interaction_type_multiply
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
using namespace ctrec::layers;
constexpr group_int_config<2> cfg{.interaction_type = ffm_interaction::dot, .use_attention = true, .attention_units = {4, 1}};
constexpr auto r = f::layers::group_int<"gi", cfg>({f::input<"a", 8>}, {f::input<"b", 8>});
int main() {}
