// GroupInt: attention re-weights pair vectors, so it needs interaction_type multiply.
// expect: ctrec::layers::group_int: use_attention needs interaction_type multiply
#include <tuple>
#include "ctrec/ctrec.hpp"
using namespace ctrec::layers;
constexpr group_int_config<2> cfg{.interaction_type = ffm_interaction::dot, .use_attention = true, .attention_units = {4, 1}};
constexpr auto r = group_int<"gi", cfg>(std::tuple{ctrec::input<"a", 8>}, std::tuple{ctrec::input<"b", 8>});
int main() {}
