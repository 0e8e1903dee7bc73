#pragma once
// The layers on the graph-as-data core (so far: Dense, BatchNorm, MLP, DCN, DIN), their
// training program and initialisation.
#include "ctrec/flat.hpp"
#include "ctrec/flat/layers/dcn.hpp"
#include "ctrec/flat/layers/dense.hpp"
#include "ctrec/flat/layers/din.hpp"
#include "ctrec/flat/layers/mlp.hpp"
#include "ctrec/flat/layers/batch_norm.hpp"
#include "ctrec/flat/train_program.hpp"
