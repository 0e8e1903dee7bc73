// A multi-operand einsum whose letter appears in one operand only (a plain sum in disguise).
// expect: invalid_einsum<ctrec::fixed_string<12>{"ij,jk,kz->i"}, ctrec::einsum_problem::letter_of_one_operand_only_is_summed>
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::einsum<"ij,jk,kz->i">(ctrec::input<"a", 2, 3>, ctrec::param<"b", 3, 4>, ctrec::param<"c", 4, 5>);
int main() {}
