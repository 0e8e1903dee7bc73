#pragma once
// Shape errors that state their numbers. A shape mistake stops constant evaluation in
//   report_shape_error(mistake, got, want)
// where `mistake` is a declared, never defined function named for the mistake
// (ctrec_shape_error_...), `got` the offending value (a width, a rank, a count of axes with the
// batch axis counted) and `want` what it must be (or must equal). GCC 12 prints the call chain as
// written, which names the layer (its Scope string) and the mistake but not the values of
// variables, so the numbers are carried by the failure itself: comparing the addresses of two
// unrelated objects is never a constant expression, and GCC prints the operands it could not
// compare with their offsets folded in:
//
//   in 'constexpr' expansion of 'ctrec::layers::din<ctrec::fixed_string<4>{"din"}, ...>(...)'
//   in 'constexpr' expansion of 'ctrec::report_shape_error(ctrec::layers::ctrec_shape_error_din_the_..., c.hidden_units[N - 1], 1)'
//   error: '((&& ctrec::shape_error::got[2]) < (& ctrec::shape_error::zero::want[0]))' is not a constant expression
//
// reads "got 2, want 0"; a 0 is printed through shape_error::zero so that it too reads
// got[0] / want[0]. The comparison runs only when a check has already failed, so a correct model
// pays nothing. Outside constant evaluation (never, in practice: models are constexpr values) the
// mistake function is called, which does not link.
//
// report_unknown_name(name, kind) does the same for a name looked up in a constant expression (an
// activation name): kind is an object named for the table the name is not in, and GCC prints
// '(((const char*)"relux") < (& ctrec::layers::unknown_keras_activation_name))' for a literal
// (a named array prints as its name). It does nothing outside constant evaluation: the caller
// then throws.
#include <cstddef>
#include <string_view>
#include <type_traits>

#include "ctrec/core/dims.hpp"

namespace ctrec {

namespace shape_error {
// Only their addresses matter: &got + v prints as got[v].
inline constexpr char got{}, want{};
namespace zero {
inline constexpr char got[1]{}, want[1]{};
}
} // namespace shape_error

constexpr void report_shape_error(void (*mistake)(), std::size_t got, std::size_t want) {
    if (std::is_constant_evaluated()) {
        const char* g = got ? &shape_error::got + got : &shape_error::zero::got[0];
        const char* w = want ? &shape_error::want + want : &shape_error::zero::want[0];
        if (g < w) mistake();  // not a constant: the message shows got[the offending value] and want[what it must be]
    }
    mistake();
}

// Operands a and b that do not broadcast: reports b's and a's extents of the first axis, from the
// right, where they differ and neither is 1.
constexpr void report_broadcast_error(void (*mistake)(), dims a, dims b) {
    const std::size_t r = a.rank > b.rank ? a.rank : b.rank;
    for (std::size_t i = 0; i < r; ++i) {
        const std::size_t x = i < a.rank ? a.d[a.rank - 1 - i] : 1, y = i < b.rank ? b.d[b.rank - 1 - i] : 1;
        if (x != y && x != 1 && y != 1) report_shape_error(mistake, y, x);
    }
    mistake();
}

constexpr void report_unknown_name(std::string_view name, const char& kind) {
    if (std::is_constant_evaluated())
        if (name.data() < &kind) return;  // not a constant: the message shows the unknown name and its kind
}

} // namespace ctrec
