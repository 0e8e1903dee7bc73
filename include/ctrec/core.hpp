#pragma once
// The core without the layers: expressions are constexpr values (core/graph.hpp) built by the DSL
// (core/dsl.hpp for expression objects, core/val.hpp for building in place), differentiated by
// constexpr sweeps (ad/autodiff.hpp), frozen into an exact-size table and planned (core/plan.hpp),
// and run by a backend (core/program.hpp): the CPU backend (kernels/cpu/executor.hpp) or the
// scalar reference backend (kernels/reference/executor.hpp).
#include "ctrec/core/dsl.hpp"
#include "ctrec/core/program.hpp"
#include "cpu/executor.hpp"
#include "reference/executor.hpp"
#include "reference/checked.hpp"
