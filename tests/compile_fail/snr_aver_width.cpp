// SNR: 'aver' routes through identity blocks, so the input width must equal out_subnet_dim.
// expect: ctrec_shape_error_snr_aver_needs_the_input_width_equal_to_out_subnet_dim
#include "ctrec/core.hpp"
#include "ctrec/layers/snr.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::snr<"snr", {.num_out_subnet = 2, .out_subnet_dim = 4, .snr_type = f::layers::snr_type::aver}>(
    {f::input<"x0", 3>, f::input<"x1", 3>});
int main() {}
