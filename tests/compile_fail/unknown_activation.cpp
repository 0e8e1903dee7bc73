// An unknown activation name is a compile error that shows the name and the resolver's table;
// given in the layer's configuration, the layer ("tower") is named too.
// expect: dense<"tower"
// expect: (((const char*)"relux") < (& ctrec::layers::not_a_keras_activation_name))
#include "ctrec/ctrec.hpp"
namespace f = ctrec;
namespace cl = ctrec::layers;
constexpr auto r = f::layers::dense<"tower", {.units = 4, .activation = cl::keras_activation("relux")}>(f::input<"x", 3>);
int main() {}
