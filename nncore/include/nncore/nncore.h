/* nncore: the engine of gst-e2e. Include this one header. */
#ifndef NNCORE_H
#define NNCORE_H

#include "tensor.h"
#include "autograd.h"
#include "ops.h"
#include "nn.h"
#include "optim.h"
#include "io.h"
#include "backend.h"
#include "threads.h"
#include "scope.h"
#include "graph.h"

#define NNCORE_VERSION_MAJOR 0
#define NNCORE_VERSION_MINOR 1

#endif
