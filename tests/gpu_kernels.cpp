#include "bodies/kernels_body.h"

namespace nbsgd::test {
NBSGD_BACKEND_SUITE(KernelsTest, Backend::Cuda);
}
