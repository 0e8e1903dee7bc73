#pragma once
// The demo's model, M1 of ../shared/bench/WORKLOADS.md at demo size: 26 sparse fields
// (embeddings of width 16 looked up outside the graph, io/embedding.hpp) and 13 dense features
// -> DIN over a 50-long behaviour sequence (the target item, field 0, is the query) -> CIN over
// the fields and a DCN over everything -> MLP [256, 128, 1].
#include "ctrec/ctrec.hpp"

namespace m1 {

namespace f = ctrec;
namespace fl = ctrec::layers;
using ctrec::make_dims;
using fl::mode;

inline constexpr std::size_t fields = 26, dim = 16, dense = 13, steps = 50;

constexpr fl::result model(mode M) {
    fl::result m;
    f::val sparse = m.input("sparse", make_dims<fields, dim>());  // pooled embeddings, one row per field
    f::val num = m.input("dense", make_dims<dense>());            // log(1 + x) of the integer features
    f::val seq = m.input("seq", make_dims<steps, dim>());         // behaviour items' embeddings
    f::val mask = m.input("mask", make_dims<steps>());            // 1 for a real step, 0 for padding
    f::val item = f::reshape(f::slice(sparse, 0, 0, 1), make_dims<dim>());
    f::val interest = fl::din(m, "din", fl::din_config<3>{.hidden_units = {32, 16, 1}, .activation = fl::act_relu},
                              item, seq, mask);
    f::val cin = fl::cin(m, "cin", fl::cin_config<2>{.hidden_units = {16, 16}}, sparse);
    f::val all = f::concat(0, {f::reshape(sparse, make_dims<fields * dim>()), num, interest});
    f::val cross = fl::dcn(m, "dcn", {.type = fl::dcn_type::vector, .layer_num = 3}, M, all);
    f::val top = f::concat(0, {cross, cin});
    f::val logit = fl::mlp(m, "tower", fl::mlp_config<3>{.output_dims = {256, 128, 1}}, M, top);
    m.set_out(logit);
    return m;
}

inline constexpr auto train_net = model(mode::train);
inline constexpr auto score_net = model(mode::predict);
inline constexpr auto label = f::input<"label", 1>;
inline constexpr auto loss = f::batch_mean(f::sigmoid_cross_entropy(train_net.out(), label)) + train_net.penalty();
inline constexpr f::input_gradients embedding_inputs{"sparse", "seq"};
inline constexpr auto score = f::sigmoid(score_net.out());

using train_step = f::train_program<float, loss, embedding_inputs>;
using scorer = f::program<float, score>;

} // namespace m1
