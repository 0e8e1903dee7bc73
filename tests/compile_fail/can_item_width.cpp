// CAN: the item embedding must hold layer_num * (D * D + D) values (here 2 * 110 = 220, not 200).
// expect: ctrec::layers::can: item_emb must be a vector of layer_num * (D * D + D) values
#include "ctrec/ctrec.hpp"
constexpr auto r = ctrec::layers::can<"can", ctrec::layers::can_config{}>(ctrec::input<"u", 10, 10>, ctrec::input<"i", 200>);
int main() {}
