// Graph-as-data core: attention_vjp (self_attention's cotangent node) has no derivative of its own,
// so differentiating a gradient of self_attention stops compilation with an error named for it.
// expect: ctrec_error_attention_vjp_and_attention_jvp_have_no_derivative_no_second_order_through_self_attention
#include "ctrec/core.hpp"
constexpr auto y = [] {
    ctrec::expr e = ctrec::self_attention(ctrec::input<"x", 4, 3>);
    const auto c = ctrec::build::leaf(e.g, ctrec::opcode::input, ctrec::make_dims<4, 3>(), true, "c");
    e.id = ctrec::build::attention_vjp(e.g, e.id, c);
    return e;
}();
using G = ctrec::grad_program<float, y>;
constexpr auto n = G::size;
int main() {}
