// GroupInt ignores out_type unless apply_out_type (source parity): an out_type that would change
// nothing does not compile without .acknowledge_ignored_out_type = true.
// expect: ctrec_error_group_int_out_type_is_ignored_without_apply_out_type_set_acknowledge_ignored_out_type
// expect: {"gi"}
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
namespace cl = ctrec::layers;
constexpr auto r = cl::group_int<"gi", cl::group_int_config<>{.out_type = cl::merge_type::stack}>({f::input<"a", 4>}, {f::input<"b", 4>});
int main() {}
