// DIN: the attention MLP must end in one unit (one score per behaviour).
// expect: ctrec::layers::din: the last hidden unit must be 1
#include "ctrec/ctrec.hpp"
using namespace ctrec::layers;
constexpr auto r = din<"din", din_config<2>{.hidden_units = {8, 2}}>(ctrec::input<"q", 4>, ctrec::input<"k", 5, 4>);
int main() {}
