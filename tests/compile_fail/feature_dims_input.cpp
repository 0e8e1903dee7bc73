// Mismatched feature dims: GroupInt's fields must share one embedding width K; the diagnostic names
// the layer ("gi") and both widths (the second left field's 6 against the first's 8).
// expect: ctrec_shape_error_group_int_fields_must_be_batched_K_or_N_by_K_of_one_width_K
// expect: {"gi"}
// expect: ctrec::shape_error::got[6]
// expect: ctrec::shape_error::want[8]
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
constexpr auto r = f::layers::group_int<"gi", ctrec::layers::group_int_config<>{}>({f::input<"a", 8>, f::input<"b", 6>},
                                                                                     {f::input<"c", 8>});
int main() {}
