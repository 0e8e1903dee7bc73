// DCN mixed mode with the source's default low_rank 0 (empty experts) is rejected.
// expect: ctrec::layers::dcn: mixed mode needs low_rank > 0
#include "ctrec/ctrec.hpp"
using namespace ctrec::layers;
constexpr auto r = dcn<"dcn", dcn_config{.type = dcn_type::mixed, .num_experts = 2}, mode::predict>(ctrec::input<"x", 16>);
int main() {}
