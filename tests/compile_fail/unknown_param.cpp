// Asking a program for a parameter it does not have.
// expect: no_such_tensor<ctrec::fixed_string<3>{"W2"}, false>
#include "ctrec/ctrec.hpp"
constexpr auto y = ctrec::matmul(ctrec::input<"x", 3>, ctrec::param<"W", 3, 5>);
int main() {
    using M = ctrec::program<float, decltype(y)>;
    M::parameters p;
    p.get<"W2">();
}
