// All ops. Each family lives in one header and one source file under src/ops/.
#pragma once
#include "metalm/ops/attention.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/index.h"
#include "metalm/ops/loss.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/norm.h"
#include "metalm/ops/random_ops.h"
#include "metalm/ops/reduce.h"
#include "metalm/ops/rotary.h"
#include "metalm/ops/shape.h"
#include "metalm/ops/softmax.h"
#include "metalm/ops/vision.h"
