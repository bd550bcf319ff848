#include "bodies/optim_body.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(OptimTest, Backend::Cuda);
}
