// Graph-as-data core: the Khatri-Rao derivative nodes (kr_gram, kr_dual, kr_matmul2) have no
// derivative of their own; a forward-mode sweep through the weight gradient kr_gram stops with an error.
// expect: ctrec_error_kr_gram_kr_dual_and_kr_matmul2_have_no_derivative_no_second_order_through_khatri_rao_matmul
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr f::expr dw = [] {
    f::expr e = f::khatri_rao_matmul(f::input<"p", 2, 3>, f::input<"q", 2, 4>, f::param<"w", 12, 5>);
    const std::uint32_t c = f::build::leaf(e.g, f::opcode::input, f::make_dims<2, 5>(), true, "c");
    e.id = f::build::kr_gram(e.g, e.id, c);
    return e;
}();
constexpr f::model_graph m = f::jvp_model(dw);
int main() {}
