#pragma once
// init::spec: an initializer as a compile-time value, so a layer's configuration
// (a structural aggregate used as a template argument) can name the initializer of
// each of its variables. Every initializer struct converts to a spec:
//   dense_config{.units = 64, .kernel_initializer = init::HeUniform{}}
// and spec::get() gives back the runtime initializer (init::any).
#include "ctrec/layers/initializers.hpp"

namespace ctrec::init {

struct spec {
    enum class which {
        zeros, ones, constant, random_normal, random_uniform, truncated_normal, variance_scaling,
        glorot_uniform, glorot_normal, he_normal, he_uniform, lecun_normal, lecun_uniform, orthogonal, identity
    };
    which w = which::glorot_uniform;
    double a = 0, b = 0;  // constant: value; normals: mean, stddev; uniform: min, max; others: scale / gain
    fan_mode mode = fan_mode::fan_in;
    distribution dist = distribution::truncated_normal;

    constexpr spec() = default;
    constexpr spec(Zeros) : w(which::zeros) {}
    constexpr spec(Ones) : w(which::ones) {}
    constexpr spec(Constant c) : w(which::constant), a(c.value) {}
    constexpr spec(RandomNormal r) : w(which::random_normal), a(r.mean), b(r.stddev) {}
    constexpr spec(TruncatedNormal r) : w(which::truncated_normal), a(r.mean), b(r.stddev) {}
    constexpr spec(RandomUniform r) : w(which::random_uniform), a(r.minval), b(r.maxval) {}
    constexpr spec(VarianceScaling v) : w(which::variance_scaling), a(v.scale), mode(v.mode), dist(v.dist) {}
    constexpr spec(GlorotUniform) : w(which::glorot_uniform) {}
    constexpr spec(GlorotNormal) : w(which::glorot_normal) {}
    constexpr spec(HeNormal) : w(which::he_normal) {}
    constexpr spec(HeUniform) : w(which::he_uniform) {}
    constexpr spec(LecunNormal) : w(which::lecun_normal) {}
    constexpr spec(LecunUniform) : w(which::lecun_uniform) {}
    constexpr spec(Orthogonal o) : w(which::orthogonal), a(o.gain) {}
    constexpr spec(Identity i) : w(which::identity), a(i.gain) {}

    any get() const {
        switch (w) {
            case which::zeros: return Zeros{};
            case which::ones: return Ones{};
            case which::constant: return Constant{a};
            case which::random_normal: return RandomNormal{a, b};
            case which::random_uniform: return RandomUniform{a, b};
            case which::truncated_normal: return TruncatedNormal{a, b};
            case which::variance_scaling: return VarianceScaling{a, mode, dist};
            case which::glorot_uniform: return GlorotUniform{};
            case which::glorot_normal: return GlorotNormal{};
            case which::he_normal: return HeNormal{};
            case which::he_uniform: return HeUniform{};
            case which::lecun_normal: return LecunNormal{};
            case which::lecun_uniform: return LecunUniform{};
            case which::orthogonal: return Orthogonal{a};
            case which::identity: return Identity{a};
        }
        return Zeros{};
    }
};

} // namespace ctrec::init
