#pragma once
// ctrec: the whole library (core DSL, differentiation, CPU programs).
#include "ctrec/core/dsl.hpp"
#include "ctrec/ad/jvp.hpp"
#include "ctrec/ad/vjp.hpp"
#include "ctrec/ad/programs.hpp"
#include "ctrec/program.hpp"
#include "ctrec/core/activations.hpp"
#include "ctrec/layers/initializers.hpp"
#include "ctrec/layers/regularizers.hpp"
