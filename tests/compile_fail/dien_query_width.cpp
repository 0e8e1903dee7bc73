// DIEN: the query width must equal num_units (here 8 != 10).
// expect: dien query width == num_units
#include "ctrec/ctrec.hpp"
constexpr auto r = ctrec::layers::dien<"dien", ctrec::layers::dien_config{.num_units = 10}>(ctrec::input<"q", 8>, ctrec::input<"k", 15, 10>);
int main() {}
