// Graph-as-data core: khatri_rao_matmul(P (R, H), Q (R, M), W (H M, J)) checks W's rows against H M.
// expect: ctrec_shape_error_khatri_rao_matmul_needs_P_R_by_H_Q_R_by_M_and_W_H_times_M_by_J
// expect: ctrec::shape_error::got[21]
// expect: ctrec::shape_error::want[20]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto y = f::khatri_rao_matmul(f::input<"p", 16, 4>, f::input<"q", 16, 5>, f::param<"w", 21, 8>);
int main() {}
