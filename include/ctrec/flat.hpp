#pragma once
// The graph-as-data core (issue 11): expressions are constexpr values (flat/graph.hpp), built by
// the DSL (flat/dsl.hpp), differentiated by constexpr sweeps (flat/autodiff.hpp), frozen into an
// exact-size table and planned (flat/plan.hpp), run by a backend (flat/program.hpp): the CPU
// backend (kernels/cpu/flat_executor.hpp) or the scalar reference (kernels/reference/).
#include "ctrec/flat/dsl.hpp"
#include "ctrec/flat/program.hpp"
#include "cpu/flat_executor.hpp"
#include "reference/flat_reference.hpp"
